#!/usr/bin/env python3
"""User-space TCP delay proxy (the kernel has no netem): every chunk is forwarded DELAY ms after
it arrived, in each direction, keeping order, so a client sees 2*DELAY of extra round-trip time.
Runs inside a lab host's netns; an nft redirect sends the host's port 22 here."""
import argparse
import asyncio
import time


async def pipe(reader, writer, delay):
    queue = asyncio.Queue()

    async def read_side():
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((time.monotonic() + delay, data))
                if not data:
                    return
        except OSError:
            await queue.put((time.monotonic(), b""))

    reading = asyncio.ensure_future(read_side())
    try:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        reading.cancel()
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            pass


async def handle(client_r, client_w, target, delay):
    try:
        up_r, up_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, up_w, delay), pipe(up_r, client_w, delay))
    for w in (client_w, up_w):
        w.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True, help="ADDR:PORT")
    p.add_argument("--target", required=True, help="ADDR:PORT")
    p.add_argument("--delay-ms", type=float, required=True, help="added delay per direction")
    a = p.parse_args()
    lh, lp = a.listen.rsplit(":", 1)
    th, tp = a.target.rsplit(":", 1)
    delay = a.delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, (th, int(tp)), delay), lh, int(lp), backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main())
