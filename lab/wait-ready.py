#!/usr/bin/env python3
"""Waits until lab hosts are ready: an SSH banner on port 22, and for systemd hosts also the
/run/lab/ready file written by lab-ready.service at the end of boot (read through
/proc/<pid1>/root, i.e. inside the host's mount namespace). Args: NAME=ADDR=MODE=HOSTDIR..."""
import argparse
import asyncio
import os
import sys
import time


def host_pid1(hostdir):
    try:
        with open(os.path.join(hostdir, "unshare.pid")) as f:
            u = f.read().strip()
        with open(f"/proc/{u}/task/{u}/children") as f:
            kids = f.read().split()
        return kids[0] if kids else None
    except OSError:
        return None


async def banner(addr):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(addr, 22), 2)
        try:
            line = await asyncio.wait_for(r.readline(), 3)
        finally:
            w.close()
        return line.startswith(b"SSH-")
    except (OSError, asyncio.TimeoutError):
        return False


async def wait_one(spec, deadline, sem):
    name, addr, mode, hostdir = spec.split("=", 3)
    while time.monotonic() < deadline:
        ok = True
        if mode == "systemd":
            pid = host_pid1(hostdir)
            ok = pid is not None and os.path.exists(f"/proc/{pid}/root/run/lab/ready")
        if ok:
            async with sem:
                ok = await banner(addr)
        if ok:
            return name, True
        await asyncio.sleep(0.3)
    return name, False


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("hosts", nargs="*")
    a = p.parse_args()
    deadline = time.monotonic() + a.timeout
    sem = asyncio.Semaphore(64)
    results = await asyncio.gather(*(wait_one(h, deadline, sem) for h in a.hosts))
    late = [n for n, ok in results if not ok]
    if late:
        print(f"lab: not ready after {a.timeout:.0f} s: {' '.join(late)}", file=sys.stderr)
        sys.exit(1)


asyncio.run(main())
