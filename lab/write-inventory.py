#!/usr/bin/env python3
"""Writes the lab's edgeops inventory (TOML) from lab/state/<ID>/hosts.tsv: the first host is the
server, the rest agents, runs of consecutive hosts collapsed into name/address ranges.
Args: HOSTS_TSV OUT_TOML BRIDGE_ADDR MIRROR_PORT KEY KNOWN_HOSTS USER"""
import os
import sys

tsv, out, bridge, port, key, known_hosts, user = sys.argv[1:8]
hosts = []
with open(tsv) as f:
    for line in f:
        name, addr = line.split("\t")[:2]
        hosts.append((name, int(name.split("-")[1]), name.split("-")[1], addr))


def ranges(entries):
    """Groups (name, index, digits, addr) into runs where the index, the width of the number
    and the last address octet all step by one inside the same /24."""
    runs = []
    for e in entries:
        if runs:
            last = runs[-1][-1]
            o_last, o_e = last[3].rsplit(".", 1), e[3].rsplit(".", 1)
            if (e[1] == last[1] + 1 and len(e[2]) == len(last[2]) and o_e[0] == o_last[0]
                    and int(o_e[1]) == int(o_last[1]) + 1):
                runs[-1].append(e)
                continue
        runs.append([e])
    return runs


def host_block(run, role):
    first, last = run[0], run[-1]
    if len(run) == 1:
        name, addr = first[0], first[3]
    else:
        name = f"lab-[{first[2]}-{last[2]}]"
        net, lo = first[3].rsplit(".", 1)
        addr = f"{net}.[{lo}-{last[3].rsplit('.', 1)[1]}]"
    return f'[[hosts]]\nname = "{name}"\naddress = "{addr}"\nrole = "{role}"\n'


base = f"http://{bridge}:{port}"
parts = [
    "# Written by scripts/lab up: the lab's fleet. Do not edit; `scripts/lab up` rewrites it.\n",
    "[cluster]\n",
    'name = "lab"\n',
    'channel = "stable"\n',
    f'install_url = "{base}/install.sh"\n',
    f'channel_url = "{base}/v1-release/channels"\n',
    f'download_url = "{base}/k3s-io/k3s/releases"\n',
    "\n[ssh]\n",
    f'user = "{user}"\n',
    f'identity_files = ["{key}"]\n',
    f'known_hosts = "{known_hosts}"\n',
    'host_key_policy = "strict"\n',
    'sudo = "passwordless"\n',
    "concurrency = 64\n",
]
if hosts:
    parts.append("\n" + host_block([hosts[0]], "server"))
    for run in ranges(hosts[1:]):
        parts.append("\n" + host_block(run, "agent"))
tmp = out + ".tmp"
with open(tmp, "w") as f:
    f.write("".join(parts))
os.replace(tmp, out)
