#!/usr/bin/python3
"""Simulated k3s "binary" for the edgeops lab (see docs/K3S-SIM.md).

One file plays every role of the real k3s executable: `k3s server`, `k3s agent`, `k3s kubectl`
(and `kubectl`/`crictl`/`ctr` through argv[0] symlinks), `k3s --version`, `k3s token`,
`k3s check-config`. mirror.py bakes the release version and the architecture into each
downloadable artifact by rewriting the SIM_BUILD line below, so every asset has its own hash.
Python 3.11 stdlib only: the lab rootfs has no PyYAML, hence the small YAML subset parser.
"""

import base64
import hashlib
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

SIM_BUILD = {"version": "v0.0.0+k3s-sim", "arch": "", "charts": ""}  # rewritten by mirror.py per artifact

VERSION = SIM_BUILD["version"]
# containerd and go versions shipped with each k3s release (k3s release notes).
RUNTIMES = {
    "v1.30": ("containerd://1.7.23-k3s2", "go1.22.9"),
    "v1.31": ("containerd://1.7.23-k3s2", "go1.22.9"),
    "v1.32": ("containerd://1.7.23-k3s2", "go1.23.3"),
}
SIM_CONF = "/etc/k3s-sim"
HEARTBEAT_SECONDS = 2.0
ETCD_PEER_TIMEOUT = 5.0  # a member without a heartbeat for this long counts as down


def minor_of(version):
    return ".".join(version.split(".")[:2])


def minor_key(version):
    """`v1.31.4+k3s1` or `v1.31` -> (1, 31), for comparing minor lines."""
    m = re.match(r"v?(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def arch():
    if SIM_BUILD["arch"]:
        return SIM_BUILD["arch"]
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, "arm" if m.startswith("arm") else m)


def now_rfc3339(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def log(level, msg):
    sys.stderr.write('time="%s" level=%s msg="%s"\n' % (now_rfc3339(), level, msg.replace('"', '\\"')))
    sys.stderr.flush()


def fatal(msg, code=1):
    log("fatal", msg)
    sys.exit(code)


def sim_setting(name, default):
    """A per-host simulator setting (/etc/k3s-sim/NAME), e.g. ready-delay."""
    try:
        with open(os.path.join(SIM_CONF, name)) as f:
            return f.read().strip() or default
    except OSError:
        return default


def fault(knob):
    return os.path.exists(os.path.join(SIM_CONF, "faults", knob))


def write_file(path, data, mode=0o600):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read_text(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def sd_notify(msg):
    """Type=notify support without systemd-notify: the main PID talks to $NOTIFY_SOCKET."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(addr)
        s.sendall(msg.encode())
    finally:
        s.close()


# ----------------------------------------------------------------------------------------------
# A YAML subset: block mappings/sequences, block scalars, flow collections, quoted scalars.
# Enough for config.yaml, kubeconfigs and Kubernetes manifests as people write them.
# ----------------------------------------------------------------------------------------------

class YamlError(Exception):
    pass


_KEY_RE = re.compile(r"""^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s'"#\[\]{}][^:]*?)\s*:(?:\s+|$)(.*)$""")


def _strip_comment(s):
    quote = None
    for i, c in enumerate(s):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"" and (i == 0 or s[i - 1] in " [{,:"):
            quote = c
        elif c == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


def _scalar(s):
    s = s.strip()
    if s.startswith('"') and s.endswith('"') and len(s) >= 2:
        return json.loads(s.replace("\\'", "'"))
    if s.startswith("'") and s.endswith("'") and len(s) >= 2:
        return s[1:-1].replace("''", "'")
    if s in ("", "~", "null", "Null", "NULL"):
        return None
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if re.fullmatch(r"-?(0|[1-9][0-9]*)", s):
        return int(s)
    return s


def _unquote_key(k):
    v = _scalar(k)
    return k if v is None or isinstance(v, bool) else str(v)


class _Flow:
    def __init__(self, s):
        self.s, self.i = s, 0

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def value(self):
        self.ws()
        c = self.s[self.i:self.i + 1]
        if c == "[":
            self.i += 1
            out = []
            while True:
                self.ws()
                if self.s[self.i:self.i + 1] == "]":
                    self.i += 1
                    return out
                out.append(self.value())
                self.ws()
                if self.s[self.i:self.i + 1] == ",":
                    self.i += 1
        if c == "{":
            self.i += 1
            out = {}
            while True:
                self.ws()
                if self.s[self.i:self.i + 1] == "}":
                    self.i += 1
                    return out
                k = self.atom(":")
                self.i += 1
                out[_unquote_key(k)] = self.value()
                self.ws()
                if self.s[self.i:self.i + 1] == ",":
                    self.i += 1
        return _scalar(self.atom(",]}"))

    def atom(self, stops):
        self.ws()
        start = self.i
        if self.i < len(self.s) and self.s[self.i] in "'\"":
            q = self.s[self.i]
            self.i += 1
            while self.i < len(self.s) and self.s[self.i] != q:
                self.i += 2 if self.s[self.i] == "\\" and q == '"' else 1
            self.i += 1
            return self.s[start:self.i]
        while self.i < len(self.s) and self.s[self.i] not in stops:
            self.i += 1
        if self.i >= len(self.s):
            raise YamlError("unterminated flow collection: %s" % self.s)
        return self.s[start:self.i].strip()


class _Block:
    def __init__(self, lines):
        self.lines, self.i = lines, 0

    def peek(self):
        while self.i < len(self.lines):
            s = self.lines[self.i].strip()
            if s and not s.startswith("#"):
                line = self.lines[self.i]
                return len(line) - len(line.lstrip(" ")), s
            self.i += 1
        return None

    @staticmethod
    def is_item(s):
        return s == "-" or s.startswith("- ")

    def node(self, indent):
        _, s = self.peek()
        if self.is_item(s):
            return self.seq(indent)
        if _KEY_RE.match(s) and s[0] not in "[{":
            return self.map(indent)
        self.i += 1
        return self.inline(_strip_comment(s), indent)

    def seq(self, indent):
        out = []
        while True:
            p = self.peek()
            if p is None or p[0] != indent or not self.is_item(p[1]):
                return out
            rest = p[1][1:]
            inner = indent + 1 + len(rest) - len(rest.lstrip(" "))
            rest = _strip_comment(rest.strip())
            if not rest:
                self.i += 1
                q = self.peek()
                out.append(self.node(q[0]) if q and q[0] > indent else None)
            elif (_KEY_RE.match(rest) and rest[0] not in "[{'\"") or self.is_item(rest):
                self.lines[self.i] = " " * inner + rest
                out.append(self.node(inner))
            else:
                self.i += 1
                out.append(self.inline(rest, indent))

    def map(self, indent):
        out = {}
        while True:
            p = self.peek()
            if p is None or p[0] != indent or self.is_item(p[1]):
                return out
            m = _KEY_RE.match(p[1])
            if not m:
                raise YamlError("expected 'key: value', got: %s" % p[1])
            key, rest = _unquote_key(m.group(1)), _strip_comment(m.group(2))
            self.i += 1
            if rest == "":
                q = self.peek()
                if q and (q[0] > indent or (q[0] == indent and self.is_item(q[1]))):
                    out[key] = self.node(q[0])
                else:
                    out[key] = None
            elif rest[0] in "|>":
                out[key] = self.block_scalar(rest, indent)
            else:
                out[key] = self.inline(rest, indent)

    def inline(self, rest, indent):
        if rest[0] in "[{":
            text = rest
            while text.count(rest[0]) > text.count("]" if rest[0] == "[" else "}") and self.i < len(self.lines):
                text += " " + _strip_comment(self.lines[self.i].strip())
                self.i += 1
            return _Flow(text).value()
        return _scalar(rest)

    def block_scalar(self, header, indent):
        body = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
                break
            body.append(line)
            self.i += 1
        nonblank = [l for l in body if l.strip()]
        cut = min((len(l) - len(l.lstrip(" ")) for l in nonblank), default=0)
        body = [l[cut:] for l in body]
        if header[0] == ">":
            text = re.sub(r"(?<=\S)\n(?=\S)", " ", "\n".join(body))
        else:
            text = "\n".join(body)
        text = text.rstrip("\n")
        if "-" in header:
            return text
        return text + "\n" if "+" not in header else "\n".join(body)


def yaml_load_all(text):
    docs, cur = [], []
    for line in text.replace("\t", "    ").splitlines():
        if line.rstrip() == "---" or line.startswith("--- "):
            docs.append(cur)
            cur = []
        elif line.rstrip() != "...":
            cur.append(line)
    docs.append(cur)
    out = []
    for lines in docs:
        b = _Block(lines)
        p = b.peek()
        if p is not None:
            out.append(b.node(p[0]))
    return out


def yaml_load(text):
    docs = yaml_load_all(text)
    return docs[0] if docs else None


def _yaml_scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if s == "" or _scalar(s) != s or re.search(r"^[\s\-?:,\[\]{}#&*!|>'\"%@`]|: |\s#|\s$|\n", s):
        return json.dumps(s)
    return s


def yaml_dump(v, indent=0):
    pad = " " * indent
    if isinstance(v, dict):
        if not v:
            return pad + "{}\n"
        out = ""
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                out += "%s%s:\n%s" % (pad, _yaml_scalar(k), yaml_dump(x, indent + (2 if isinstance(x, dict) else 0)))
            else:
                out += "%s%s: %s\n" % (pad, _yaml_scalar(k), yaml_dump(x).strip())
        return out
    if isinstance(v, list):
        if not v:
            return pad + "[]\n"
        out = ""
        for x in v:
            if isinstance(x, (dict, list)) and x:
                body = yaml_dump(x, indent + 2)
                out += pad + "- " + body[indent + 2:]
            else:
                out += "%s- %s\n" % (pad, yaml_dump(x).strip())
        return out
    return pad + _yaml_scalar(v) + "\n"


# ----------------------------------------------------------------------------------------------
# Configuration: CLI flags, K3S_* environment and config.yaml (+ config.yaml.d), like k3s.
# ----------------------------------------------------------------------------------------------

BOOL_FLAGS = {
    "cluster-init", "cluster-reset", "disable-network-policy", "disable-helm-controller",
    "disable-kube-proxy", "disable-scheduler", "disable-cloud-controller", "disable-apiserver",
    "disable-controller-manager", "disable-etcd", "secrets-encryption", "selinux", "rootless",
    "prefer-bundled-bin", "protect-kernel-defaults", "debug", "embedded-registry", "docker",
    "with-node-id", "etcd-expose-metrics", "etcd-disable-snapshots", "flannel-ipv6-masq",
    "flannel-external-ip", "egress-selector-mode-disabled", "supervisor-metrics", "lb-server-port-disabled",
}
LIST_FLAGS = {"node-label", "node-taint", "tls-san", "disable", "kube-apiserver-arg", "kubelet-arg",
              "kube-proxy-arg", "kube-controller-manager-arg", "kube-scheduler-arg", "node-ip",
              "node-external-ip", "etcd-arg", "kube-cloud-controller-manager-arg"}
SHORT_FLAGS = {"t": "token", "s": "server", "d": "data-dir", "o": "write-kubeconfig", "c": "config", "v": "v"}
ENV_FLAGS = {
    "K3S_TOKEN": "token", "K3S_TOKEN_FILE": "token-file", "K3S_URL": "server", "K3S_NODE_NAME": "node-name",
    "K3S_KUBECONFIG_MODE": "write-kubeconfig-mode", "K3S_KUBECONFIG_OUTPUT": "write-kubeconfig",
    "K3S_DATA_DIR": "data-dir", "K3S_CLUSTER_INIT": "cluster-init", "K3S_AGENT_TOKEN": "agent-token",
    "K3S_CONFIG_FILE": "config", "K3S_DATASTORE_ENDPOINT": "datastore-endpoint",
}


def parse_flags(argv):
    """CLI flags -> dict. Unknown value flags are accepted (real k3s has ~150 of them)."""
    flags, rest, i = {}, [], 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if not a.startswith("-") or a == "-":
            rest.append(a)
            continue
        name = a.lstrip("-")
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        name = SHORT_FLAGS.get(name, name) if len(name) == 1 else name
        if value is None:
            if name in BOOL_FLAGS:
                value = True
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                fatal("flag needs an argument: -%s" % name)
        if name in BOOL_FLAGS and isinstance(value, str):
            value = value.lower() in ("true", "1", "yes")
        if name in LIST_FLAGS:
            flags.setdefault(name, []).extend(x for x in str(value).split(",") if x)
        else:
            flags[name] = value
    return flags, rest


def load_config(argv):
    cli, rest = parse_flags(argv)
    env = {}
    for var, flag in ENV_FLAGS.items():
        if os.environ.get(var):
            v = os.environ[var]
            env[flag] = v.lower() == "true" if flag in BOOL_FLAGS else ([v] if flag in LIST_FLAGS else v)
    path = cli.get("config") or env.get("config") or "/etc/rancher/k3s/config.yaml"
    files = [path] if os.path.exists(path) else []
    dropins = path + ".d"
    if os.path.isdir(dropins):
        files += sorted(os.path.join(dropins, f) for f in os.listdir(dropins) if f.endswith((".yaml", ".yml")))
    filecfg = {}
    for f in files:
        try:
            doc = yaml_load(read_text(f, "")) or {}
        except (YamlError, ValueError) as e:
            fatal("failed to parse %s: %s" % (f, e))
        if not isinstance(doc, dict):
            fatal("%s: expected a mapping of flag names" % f)
        for k, v in doc.items():
            append = k.endswith("+")
            k = k.rstrip("+")
            if k in LIST_FLAGS:
                vals = [str(x) for x in (v if isinstance(v, list) else str(v).split(","))]
                filecfg[k] = (filecfg.get(k, []) + vals) if append else vals
            else:
                filecfg[k] = v
    cfg = dict(env)
    for src in (filecfg, cli):  # precedence: env < config file < CLI; lists accumulate
        for k, v in src.items():
            if k in LIST_FLAGS:
                cfg[k] = cfg.get(k, []) + v if k in cli and k in filecfg and src is cli else v
            else:
                cfg[k] = v
    if cfg.get("token-file") and not cfg.get("token"):
        cfg["token"] = (read_text(cfg["token-file"]) or fatal("cannot read token file %s" % cfg["token-file"])).strip()
    return cfg, rest


# ----------------------------------------------------------------------------------------------
# Tokens and PKI (openssl CLI; the CA hash in the secure token is sha256 of the CA bundle bytes).
# ----------------------------------------------------------------------------------------------

def split_token(token):
    """'K10<hash>::<user>:<secret>' -> (hash or None, secret)."""
    m = re.fullmatch(r"K10([0-9a-f]{64})::([^:]+):(.+)", token or "")
    if m:
        return m.group(1), m.group(3)
    return None, token


def token_key(secret):
    """What the simulated datastore records of the token it is bound to (never the token)."""
    return hashlib.sha256(("k3s-sim-bootstrap:" + secret).encode()).hexdigest()


def bootstrap_stream(secret, n):
    """The keystream the simulated bootstrap data is sealed with, derived from the token (k3s
    derives an AES-GCM key from it with PBKDF2; the simulator's cipher is its own)."""
    out, block = b"", 0
    while len(out) < n:
        out += hashlib.sha256(("k3s-sim-bootstrap-key:%s:%d" % (secret, block)).encode()).digest()
        block += 1
    return out[:n]


def bootstrap_seal(secret, tls):
    """k3s keeps the cluster CA (its bootstrap data) in the datastore, encrypted with the token,
    so a snapshot carries it (pkg/cluster/bootstrap.go)."""
    files = {n: read_text(os.path.join(tls, n)) or "" for n in ("server-ca.crt", "server-ca.key")}
    plain = json.dumps(files).encode()
    sealed = bytes(a ^ b for a, b in zip(plain, bootstrap_stream(secret, len(plain))))
    return {"tokenHash": token_key(secret), "data": base64.b64encode(sealed).decode()}


def bootstrap_open(sealed, secret):
    """The CA files of sealed bootstrap data; None when it is another token's."""
    if sealed.get("tokenHash") != token_key(secret):
        return None
    data = base64.b64decode(sealed["data"])
    return json.loads(bytes(a ^ b for a, b in zip(data, bootstrap_stream(secret, len(data)))))


def write_server_tokens(server_dir, ca_file, secret):
    with open(ca_file, "rb") as f:
        ca_hash = hashlib.sha256(f.read()).hexdigest()
    full_token = "K10%s::server:%s" % (ca_hash, secret)
    for name in ("token", "node-token", "agent-token"):
        write_file(os.path.join(server_dir, name), full_token + "\n", 0o600)


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode != 0:
        fatal("openssl %s failed: %s" % (args[0], r.stderr.strip()))


def make_ca(tls):
    os.makedirs(tls, exist_ok=True)
    key, crt = os.path.join(tls, "server-ca.key"), os.path.join(tls, "server-ca.crt")
    if os.path.exists(crt) and os.path.exists(key):
        return
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-x509", "-new", "-key", key, "-sha256", "-days", "3650", "-out", crt,
            "-subj", "/CN=k3s-server-ca@%d" % int(time.time()),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign")
    os.chmod(key, 0o600)


def make_leaf(tls, name, subj, ext):
    key, csr, crt = (os.path.join(tls, name + s) for s in (".key", ".csr", ".crt"))
    extfile = os.path.join(tls, name + ".ext")
    write_file(extfile, ext)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-out", csr, "-subj", subj)
    openssl("x509", "-req", "-in", csr, "-CA", os.path.join(tls, "server-ca.crt"),
            "-CAkey", os.path.join(tls, "server-ca.key"), "-CAcreateserial", "-days", "365",
            "-sha256", "-out", crt, "-extfile", extfile)
    os.remove(csr)
    os.chmod(key, 0o600)
    return crt, key


def host_ips():
    ips = []
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
        ips = re.findall(r"\binet6? ([0-9a-fA-F:.]+)/", out)
    except OSError:
        pass
    return [ip for ip in ips if not ip.startswith("fe80")]


def primary_ip():
    for ip in host_ips():
        if not ip.startswith("127.") and ":" not in ip:
            return ip
    return "127.0.0.1"


def make_serving_cert(tls, cfg, hostname):
    names = {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", "localhost", hostname}
    ips = {"127.0.0.1", "::1", "10.43.0.1"} | set(host_ips())
    for san in cfg.get("tls-san", []) + cfg.get("node-ip", []) + [cfg.get("advertise-address") or ""]:
        if not san:
            continue
        (ips if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", san) else names).add(san)
    alt = ",".join(["DNS:" + n for n in sorted(names)] + ["IP:" + i for i in sorted(ips)])
    return make_leaf(tls, "serving-kube-apiserver", "/O=k3s/CN=k3s",
                     "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % alt)


def clean_leaf_certs(tls):
    """k3s's cleanCerts after a restore: the leaf certificates signed by the CA that was
    replaced go, and are made again from the current CA at the start."""
    for name in os.listdir(tls):
        if name.startswith(("client-", "serving-")):
            os.remove(os.path.join(tls, name))


def make_admin_cert(tls):
    crt, key = os.path.join(tls, "client-admin.crt"), os.path.join(tls, "client-admin.key")
    if os.path.exists(crt) and os.path.exists(key):
        return crt, key
    return make_leaf(tls, "client-admin", "/O=system:masters/CN=system:admin",
                     "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage=clientAuth\n")


def b64file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def write_kubeconfig(path, mode, tls, port):
    ca, crt, key = (os.path.join(tls, n) for n in ("server-ca.crt", "client-admin.crt", "client-admin.key"))
    text = (
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: %s\n"
        "    server: https://127.0.0.1:%s\n  name: default\ncontexts:\n- context:\n    cluster: default\n"
        "    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {}\n"
        "users:\n- name: default\n  user:\n    client-certificate-data: %s\n    client-key-data: %s\n"
    ) % (b64file(ca), port, b64file(crt), b64file(key))
    write_file(path, text, mode)


# ----------------------------------------------------------------------------------------------
# Node identity: what a kubelet would report about its host.
# ----------------------------------------------------------------------------------------------

def os_image():
    for line in (read_text("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def node_password(data_dir):
    """Like k3s: a per-node secret in /etc/rancher/node/password, checked on re-registration."""
    path = "/etc/rancher/node/password" if data_dir == "/var/lib/rancher/k3s" else os.path.join(data_dir, "node-password")
    pw = (read_text(path) or "").strip()
    if not pw:
        pw = secrets.token_hex(16)
        write_file(path, pw + "\n", 0o600)
    return pw


def node_identity(cfg, role):
    name = cfg.get("node-name") or socket.gethostname()
    labels = {}
    for lab in cfg.get("node-label", []):
        k, _, v = lab.partition("=")
        labels[k] = v
    taints = []
    for t in cfg.get("node-taint", []):
        m = re.fullmatch(r"([^=:]+)(?:=([^:]*))?:(NoSchedule|PreferNoSchedule|NoExecute)", t)
        if not m:
            fatal("invalid node-taint %r (want key=value:Effect)" % t)
        taint = {"key": m.group(1), "effect": m.group(3)}
        if m.group(2):
            taint["value"] = m.group(2)
        taints.append(taint)
    ip = (cfg.get("node-ip") or [None])[0] or primary_ip()
    runtime = RUNTIMES.get(minor_of(VERSION), ("containerd://1.7.23-k3s2", "go1.22.9"))[0]
    return {
        "name": name, "role": role, "labels": labels, "taints": taints, "ip": ip,
        "arch": arch(), "version": VERSION, "osImage": os_image(), "kernel": os.uname().release,
        "runtime": runtime, "machineID": (read_text("/etc/machine-id") or "").strip(),
        "bootID": (read_text("/proc/sys/kernel/random/boot_id") or "").strip(),
        "cpu": str(os.cpu_count() or 1), "nodeArgs": redact_args(sys.argv[1:]), "memory": mem_kib(),
    }


def redact_args(argv):
    """k3s.io/node-args never carries secrets: token values are masked, as k3s does."""
    out, hide = [], False
    for a in argv:
        name = a.lstrip("-").split("=", 1)[0]
        if hide:
            out.append("********")
            hide = False
        elif name in ("token", "t", "agent-token", "datastore-endpoint") and a.startswith("-"):
            if "=" in a:
                out.append(a.split("=", 1)[0] + "=********")
            else:
                out.append(a)
                hide = True
        else:
            out.append(a)
    return out


def mem_kib():
    m = re.search(r"MemTotal:\s+(\d+)", read_text("/proc/meminfo") or "")
    return (m.group(1) if m else "4025016") + "Ki"


class Readiness:
    """The kubelet side of Ready: after ready-delay seconds, unless the never-ready fault is set."""

    def __init__(self):
        self.started = time.time()
        self.delay = float(sim_setting("ready-delay", "2")) * slow_factor()

    def ready(self):
        return not fault("never-ready") and time.time() - self.started >= self.delay


# ----------------------------------------------------------------------------------------------
# The cluster store (held by the first server; joined servers proxy to it).
# ----------------------------------------------------------------------------------------------

def k8s_status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# ----------------------------------------------------------------------------------------------
# Workloads: Deployments (via ReplicaSets), DaemonSets, bare Pods and PodDisruptionBudgets,
# scheduled onto nodes and evicted like kube-controller-manager, kube-scheduler and the
# apiserver's eviction subresource do - enough for `kubectl drain` to meet what it meets in k3s.
# No container runs: a pod is Running once bound, Ready `pod-ready-delay` s later on a Ready node.
# ----------------------------------------------------------------------------------------------

WORKLOADS = {  # resource -> (apiVersion, kind, group suffix used in messages)
    "pods": ("v1", "Pod", ""), "deployments": ("apps/v1", "Deployment", ".apps"),
    "replicasets": ("apps/v1", "ReplicaSet", ".apps"), "daemonsets": ("apps/v1", "DaemonSet", ".apps"),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget", ".policy"),
}
KIND_TO_RESOURCE = {v[1]: k for k, v in WORKLOADS.items()}
PDB_VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def rand_suffix(n=5):
    # Kubernetes' rand.String alphabet (no vowels, no confusable digits).
    return "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


def template_hash(template):
    h = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return "".join("bcdfghjklmnpqrstvwxz2456789"[int(h[i:i + 2], 16) % 27] for i in range(0, 20, 2))


def selector_matches(selector, labels):
    """A LabelSelector (matchLabels and matchExpressions In/NotIn/Exists/DoesNotExist)."""
    labels = labels or {}
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        op, key, values = e.get("operator"), e.get("key"), e.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) or \
                (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def controller_of(obj):
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def scaled(value, total, round_up):
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1]) * total
        return -(-pct // 100) if round_up else pct // 100
    return int(value)


class Workloads:
    """Mixed into Store: the objects live in self.state (so a snapshot of the store has them)."""

    def wl(self, resource):
        return self.state.setdefault(resource, {})

    def wl_list(self, resource, ns=None):
        with self.lock:
            self.reconcile()
            return [o for k, o in sorted(self.wl(resource).items()) if ns is None or o["metadata"]["namespace"] == ns]

    def wl_create(self, resource, ns, body):
        api_version, kind, group = WORKLOADS[resource]
        meta = body.get("metadata") or {}
        name = meta.get("name") or (meta.get("generateName", "") + rand_suffix() if meta.get("generateName") else "")
        if not name:
            return 422, k8s_status(422, "Invalid", "%s%s \"\" is invalid: metadata.name: Required value: name or generateName is required" % (resource, group))
        ns = ns or meta.get("namespace") or "default"
        with self.lock:
            if ns not in self.state["namespaces"]:
                return 404, k8s_status(404, "NotFound", 'namespaces "%s" not found' % ns)
            if ns + "/" + name in self.wl(resource):
                return 409, k8s_status(409, "AlreadyExists", '%s%s "%s" already exists' % (resource, group, name))
            spec = json.loads(json.dumps(body.get("spec") or {}))
            if resource == "poddisruptionbudgets" and ("minAvailable" in spec) == ("maxUnavailable" in spec):
                return 422, k8s_status(422, "Invalid", 'PodDisruptionBudget.policy "%s" is invalid: spec: Invalid value: '
                                       'minAvailable and maxUnavailable cannot be both set' % name
                                       if "minAvailable" in spec else 'PodDisruptionBudget.policy "%s" is invalid: spec: '
                                       'Required value: one of minAvailable or maxUnavailable' % name)
            if resource in ("deployments", "daemonsets") and not selector_matches(
                    spec.get("selector"), ((spec.get("template") or {}).get("metadata") or {}).get("labels")):
                return 422, k8s_status(422, "Invalid", '%s%s "%s" is invalid: spec.template.metadata.labels: Invalid value: '
                                       '`selector` does not match template `labels`' % (kind, group, name))
            if resource == "deployments":
                spec.setdefault("replicas", 1)
            obj = {"apiVersion": api_version, "kind": kind,
                   "metadata": self.meta(name, ns, meta.get("labels") or {}), "spec": spec, "status": {}}
            obj["metadata"]["generation"] = 1
            for k in ("annotations", "ownerReferences"):
                if meta.get(k):
                    obj["metadata"][k] = meta[k]
            if resource == "pods":
                spec.setdefault("terminationGracePeriodSeconds", 30)
                obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            self.wl(resource)[ns + "/" + name] = obj
            self.reconcile()
            self.save()
            return 201, json.loads(json.dumps(self.wl(resource)[ns + "/" + name]))

    def wl_patch(self, resource, ns, name, patch):
        """Merge patch of labels, annotations and spec (what `kubectl apply`/`scale` change)."""
        with self.lock:
            obj = self.wl(resource).get(ns + "/" + name)
            if obj is None:
                return None
            for part in ("metadata", "spec"):
                if isinstance(patch.get(part), dict):
                    allowed = {k: v for k, v in patch[part].items() if part == "spec" or k in ("labels", "annotations")}
                    obj[part] = merge_patch(obj[part], allowed)
            obj["metadata"]["resourceVersion"] = self.bump()
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            self.reconcile()
            self.save()
            return json.loads(json.dumps(obj))

    def wl_delete(self, resource, ns, name):
        """Delete; dependents go with it (the garbage collector's background propagation)."""
        with self.lock:
            obj = self.wl(resource).pop(ns + "/" + name, None)
            if obj is not None:
                self.reconcile()
                self.save()
            return obj

    # --- controllers -------------------------------------------------------------------------
    def schedulable(self, node_name, pod, for_daemon=False):
        """kube-scheduler's filters that matter here: Ready, not cordoned, taints, nodeSelector."""
        node = self.state["nodes"].get(node_name)
        if node is None:
            return False
        spec = node["obj"]["spec"]
        tolerations = pod["spec"].get("tolerations") or []

        def tolerated(taint):
            return any(t.get("operator") == "Exists" and not t.get("key") or
                       (t.get("key") == taint["key"] and (t.get("operator") == "Exists" or t.get("value") == taint.get("value"))
                        and t.get("effect") in (None, "", taint.get("effect")))
                       for t in tolerations)
        for taint in spec.get("taints") or []:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(taint):
                return False
        labels = node["obj"]["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in (pod["spec"].get("nodeSelector") or {}).items()):
            return False
        if for_daemon:  # DaemonSet pods tolerate not-ready, unreachable and unschedulable
            return True
        return not spec.get("unschedulable") and self.node_state(node_name) == "True"

    def new_pod(self, name, ns, template, owner, node=None):
        tmeta = template.get("metadata") or {}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": self.meta(name, ns, dict(tmeta.get("labels") or {})),
               "spec": json.loads(json.dumps(template.get("spec") or {})),
               "status": {"phase": "Pending", "qosClass": "BestEffort"}}
        pod["metadata"]["ownerReferences"] = [owner]
        pod["spec"].setdefault("terminationGracePeriodSeconds", 30)
        if node:
            pod["spec"]["nodeName"] = node
        self.wl("pods")[ns + "/" + name] = pod
        return pod

    def reconcile(self):
        """One pass of the controllers. Runs on every change and every heartbeat period."""
        with self.lock:
            for r in WORKLOADS:
                self.wl(r)
            pods = self.wl("pods")
            nodes = sorted(self.state["nodes"])
            # Pod GC: pods bound to a node that no longer exists, or whose controller is gone.
            for key, pod in list(pods.items()):
                owner = controller_of(pod)
                owners = self.state["jobs"] if owner and owner["kind"] == "Job" else \
                    self.wl(KIND_TO_RESOURCE.get((owner or {}).get("kind"), "replicasets"))
                gone_owner = owner and ("%s/%s" % (pod["metadata"]["namespace"], owner["name"])) not in owners
                if (pod["spec"].get("nodeName") and pod["spec"]["nodeName"] not in nodes) or gone_owner:
                    del pods[key]
                    self.state.get("crashloops", {}).pop(key, None)
            # ReplicaSets owned by a gone Deployment.
            for key, rs in list(self.wl("replicasets").items()):
                owner = controller_of(rs)
                if owner and "%s/%s" % (rs["metadata"]["namespace"], owner["name"]) not in self.wl("deployments"):
                    del self.wl("replicasets")[key]
                    for pkey, pod in list(pods.items()):
                        if (controller_of(pod) or {}).get("uid") == rs["metadata"]["uid"]:
                            del pods[pkey]
            # Deployment controller: one ReplicaSet per pod template, the current one scaled up.
            for key, dep in self.wl("deployments").items():
                ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
                tmpl = dep["spec"].get("template") or {}
                h = template_hash(tmpl)
                rs_name = "%s-%s" % (name, h)
                for rkey, rs in list(self.wl("replicasets").items()):
                    if (controller_of(rs) or {}).get("uid") == dep["metadata"]["uid"] and rs["metadata"]["name"] != rs_name:
                        rs["spec"]["replicas"] = 0  # the rollout replaces old pods at once
                rs = self.wl("replicasets").get(ns + "/" + rs_name)
                if rs is None:
                    labels = dict((tmpl.get("metadata") or {}).get("labels") or {}, **{"pod-template-hash": h})
                    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": self.meta(rs_name, ns, labels),
                          "spec": {"selector": dep["spec"].get("selector"),
                                   "template": dict(tmpl, metadata=dict(tmpl.get("metadata") or {}, labels=labels))},
                          "status": {}}
                    rs["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                                          "uid": dep["metadata"]["uid"], "controller": True,
                                                          "blockOwnerDeletion": True}]
                    self.wl("replicasets")[ns + "/" + rs_name] = rs
                rs["spec"]["replicas"] = int(dep["spec"].get("replicas", 1))
            # ReplicaSet controller: create missing pods, delete surplus (unbound/unready first).
            for key, rs in list(self.wl("replicasets").items()):
                ns = rs["metadata"]["namespace"]
                mine = [p for p in pods.values() if (controller_of(p) or {}).get("uid") == rs["metadata"]["uid"]]
                want = int(rs["spec"].get("replicas", 1))
                mine.sort(key=lambda p: (bool(p["spec"].get("nodeName")), self.pod_ready(p)))
                for p in mine[:max(0, len(mine) - want)]:
                    del pods[ns + "/" + p["metadata"]["name"]]
                for _ in range(want - len(mine)):
                    self.new_pod("%s-%s" % (rs["metadata"]["name"], rand_suffix()), ns, rs["spec"]["template"],
                                 {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs["metadata"]["name"],
                                  "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True})
                mine = [p for p in pods.values() if (controller_of(p) or {}).get("uid") == rs["metadata"]["uid"]]
                ready = sum(1 for p in mine if self.pod_ready(p))
                rs["status"] = {"replicas": len(mine), "readyReplicas": ready, "availableReplicas": ready,
                                "fullyLabeledReplicas": len(mine), "observedGeneration": 1}
            # DaemonSet controller: one pod per eligible node, bound directly.
            for key, ds in self.wl("daemonsets").items():
                ns, uid = ds["metadata"]["namespace"], ds["metadata"]["uid"]
                tmpl = ds["spec"].get("template") or {}
                probe = {"spec": tmpl.get("spec") or {}}
                eligible = [n for n in nodes if self.schedulable(n, probe, for_daemon=True)]
                mine = {p["spec"].get("nodeName"): p for p in pods.values() if (controller_of(p) or {}).get("uid") == uid}
                for node, p in mine.items():
                    if node not in eligible:
                        del pods[ns + "/" + p["metadata"]["name"]]
                for node in eligible:
                    if node not in mine:
                        self.new_pod("%s-%s" % (ds["metadata"]["name"], rand_suffix()), ns, tmpl,
                                     {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds["metadata"]["name"],
                                      "uid": uid, "controller": True, "blockOwnerDeletion": True}, node)
                mine = [p for p in pods.values() if (controller_of(p) or {}).get("uid") == uid]
                ready = sum(1 for p in mine if self.pod_ready(p))
                ds["status"] = {"desiredNumberScheduled": len(eligible), "currentNumberScheduled": len(mine),
                                "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": len(mine),
                                "numberMisscheduled": 0, "observedGeneration": 1}
            # Deployment status from its ReplicaSets.
            for dep in self.wl("deployments").values():
                owned = [rs for rs in self.wl("replicasets").values() if (controller_of(rs) or {}).get("uid") == dep["metadata"]["uid"]]
                total = sum(rs["status"].get("replicas", 0) for rs in owned)
                ready = sum(rs["status"].get("readyReplicas", 0) for rs in owned)
                dep["status"] = {"replicas": total, "readyReplicas": ready, "availableReplicas": ready,
                                 "updatedReplicas": total, "unavailableReplicas": max(0, dep["spec"].get("replicas", 1) - ready),
                                 "observedGeneration": dep["metadata"].get("generation", 1)}
            self.schedule_pending(nodes)
            for pod in pods.values():
                self.pod_status(pod)
            for pdb in self.wl("poddisruptionbudgets").values():
                self.pdb_status(pdb)

    def schedule_pending(self, nodes):
        pods = self.wl("pods")
        for key in sorted(pods):
            pod = pods[key]
            if pod["spec"].get("nodeName"):
                continue
            fits = [n for n in nodes if self.schedulable(n, pod)]
            if not fits:
                cordoned = sum(1 for n in nodes if self.state["nodes"][n]["obj"]["spec"].get("unschedulable"))
                msg = "0/%d nodes are available: " % len(nodes) + ", ".join(
                    x for x in ("%d node(s) were unschedulable" % cordoned if cordoned else "",
                                "%d node(s) were not ready or had untolerated taints" % (len(nodes) - cordoned)
                                if len(nodes) - cordoned else "") if x) + "."
                pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                "message": msg, "lastTransitionTime": now_rfc3339()}]
                continue
            owner = (controller_of(pod) or {}).get("uid")
            # Spread: fewest pods of the same controller, then fewest pods, then name.
            load = {n: (sum(1 for p in pods.values() if p["spec"].get("nodeName") == n and owner
                            and (controller_of(p) or {}).get("uid") == owner),
                        sum(1 for p in pods.values() if p["spec"].get("nodeName") == n), n) for n in fits}
            pod["spec"]["nodeName"] = min(fits, key=lambda n: load[n])
            pod["status"]["scheduledAt"] = time.time()

    def pod_ready(self, pod):
        node = pod["spec"].get("nodeName")
        if not node or node not in self.state["nodes"] or self.node_state(node) != "True":
            return False
        delay = float(sim_setting("pod-ready-delay", "1"))
        return time.time() - pod["status"].get("scheduledAt", 0) >= delay

    def crashloop_of(self, pod):
        """The crash loop this pod's container is in (a dict from crashloop_for), or None: set
        on a helm-install Job's pod, or on the pods of a Deployment the helm controller made."""
        loops = self.state.get("crashloops") or {}
        key = pod["metadata"]["namespace"] + "/" + pod["metadata"]["name"]
        if key in loops:
            return loops[key]
        rs = controller_of(pod)
        if rs and rs["kind"] == "ReplicaSet":
            rs_obj = self.wl("replicasets").get(pod["metadata"]["namespace"] + "/" + rs["name"])
            dep = controller_of(rs_obj) if rs_obj else None
            if dep:
                return loops.get("deployment:%s/%s" % (pod["metadata"]["namespace"], dep["name"]))
        return None

    def container_runs(self, pod, loop):
        """The container's runs so far, [(start, end or None)], by the kubelet's restart back-off
        (10 s doubling, capped at 5 min, after each failed run) from when the pod started."""
        t0 = pod["status"].get("scheduledAt")
        if t0 is None:
            return []
        now, runs, start, backoff = time.time(), [], t0, CRASHLOOP_BACKOFF_FIRST
        while start <= now:
            end = start + loop["run"]
            runs.append((start, end if end <= now else None))
            if end > now:
                break
            start, backoff = end + backoff, min(backoff * 2, CRASHLOOP_BACKOFF_CAP)
        return runs

    def container_log(self, pod, previous):
        """(lines, error) of the pod's container: its current (or last) run, or the one before."""
        loop = self.crashloop_of(pod)
        if loop is None:
            return [], ("previous terminated container \"%s\" in pod \"%s\" not found"
                        % ((pod["spec"].get("containers") or [{}])[0].get("name", ""), pod["metadata"]["name"])
                        if previous else None)
        runs = self.container_runs(pod, loop)
        if previous:
            done = [r for r in runs if r[1] is not None]
            if runs and runs[-1][1] is not None:
                done = done[:-1]
            if not done:
                return [], 'previous terminated container "%s" in pod "%s" not found' % (
                    (pod["spec"].get("containers") or [{}])[0].get("name", ""), pod["metadata"]["name"])
            start, end = done[-1]
        elif not runs:
            return [], 'container "%s" in pod "%s" is waiting to start: ContainerCreating' % (
                (pod["spec"].get("containers") or [{}])[0].get("name", ""), pod["metadata"]["name"])
        else:
            start, end = runs[-1]
        return crashloop_lines(loop, (end or time.time()) - start), None

    def pod_status(self, pod):
        st = pod["status"]
        node = pod["spec"].get("nodeName")
        if not node:
            st["phase"] = "Pending"
            return
        if "scheduledAt" not in st:
            st["scheduledAt"] = time.time()
        n = self.state["nodes"].get(node) or {}
        ip = next((a["address"] for a in (n.get("status") or {}).get("addresses", []) if a["type"] == "InternalIP"), "")
        cidr = (n.get("obj") or {}).get("spec", {}).get("podCIDR", "10.42.0.0/24")
        ready = self.pod_ready(pod)
        started = now_rfc3339(st["scheduledAt"])
        st.update({"phase": "Running", "hostIP": ip, "startTime": started,
                   "podIP": cidr.rsplit(".", 1)[0] + ".%d" % (2 + int(hashlib.sha1(pod["metadata"]["uid"].encode()).hexdigest(), 16) % 250),
                   "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                                  {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                                  {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": started},
                                  {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": started}],
                   "containerStatuses": [{"name": c.get("name", "c"), "image": c.get("image", ""), "ready": ready,
                                          "restartCount": 0, "started": True,
                                          "state": {"running": {"startedAt": started}}}
                                         for c in pod["spec"].get("containers") or []]})
        loop = self.crashloop_of(pod)
        if loop is None:
            return
        # A container that keeps failing: never ready; between runs waiting in CrashLoopBackOff
        # with the last run's exit; the pod stays Running (restartPolicy Always / OnFailure).
        runs = self.container_runs(pod, loop)
        cs = st["containerStatuses"][0] if st["containerStatuses"] else None
        for cond in st["conditions"]:
            if cond["type"] in ("ContainersReady", "Ready"):
                cond["status"] = "False"
        if cs is None or not runs:
            return
        cs.update({"ready": False, "restartCount": len(runs) - 1})
        start, end = runs[-1]
        finished = [r for r in runs if r[1] is not None]
        if finished:
            fs, fe = finished[-1]
            cs["lastState"] = {"terminated": {"exitCode": loop["exit"], "reason": "Error",
                                              "startedAt": now_rfc3339(fs), "finishedAt": now_rfc3339(fe)}}
        if end is None:
            cs["state"] = {"running": {"startedAt": now_rfc3339(start)}}
            cs["started"] = True
        else:
            cs["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off %s restarting failed container=%s pod=%s_%s(%s)"
                                       % (go_duration(min(CRASHLOOP_BACKOFF_FIRST * 2 ** (len(runs) - 1), CRASHLOOP_BACKOFF_CAP)),
                                          cs["name"], pod["metadata"]["name"], pod["metadata"]["namespace"], pod["metadata"]["uid"])}}
            cs["started"] = False

    def expected_scale(self, pods):
        """The disruption controller's expected count: the scale of each pod's controller."""
        total, seen = 0, set()
        for p in pods:
            owner = controller_of(p)
            if owner is None:
                return None
            if owner["uid"] in seen:
                continue
            seen.add(owner["uid"])
            res = KIND_TO_RESOURCE.get(owner["kind"])
            ctrl = self.wl(res).get("%s/%s" % (p["metadata"]["namespace"], owner["name"])) if res else None
            if ctrl is None:
                return None
            total += int(ctrl["spec"].get("replicas", 1)) if res == "replicasets" else \
                int(ctrl["status"].get("desiredNumberScheduled", 0))
        return total

    def pdb_status(self, pdb):
        ns = pdb["metadata"]["namespace"]
        matched = [p for p in self.wl("pods").values()
                   if p["metadata"]["namespace"] == ns and selector_matches(pdb["spec"].get("selector"), p["metadata"].get("labels"))]
        healthy = sum(1 for p in matched if self.pod_ready(p))
        spec = pdb["spec"]
        if "minAvailable" in spec and not str(spec["minAvailable"]).endswith("%"):
            expected, desired = len(matched), int(spec["minAvailable"])
        else:
            expected = self.expected_scale(matched)
            if expected is None:  # pods without a (known) controller: no disruption allowed
                expected, desired = len(matched), len(matched) + 1
            elif "minAvailable" in spec:
                desired = scaled(spec["minAvailable"], expected, True)
            else:
                desired = max(0, expected - scaled(spec["maxUnavailable"], expected, True))
        allowed = max(0, healthy - desired)
        pdb["status"] = {"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
                         "disruptionsAllowed": allowed, "observedGeneration": pdb["metadata"].get("generation", 1),
                         "conditions": [{"type": "DisruptionAllowed", "status": "True" if allowed else "False",
                                         "reason": "SufficientPods" if allowed else "InsufficientPods", "message": "",
                                         "lastTransitionTime": pdb["metadata"]["creationTimestamp"]}]}

    def evict(self, ns, name):
        """The pods/eviction subresource: delete unless a PodDisruptionBudget forbids it."""
        with self.lock:
            self.reconcile()
            pod = self.wl("pods").get(ns + "/" + name)
            if pod is None:
                return 404, k8s_status(404, "NotFound", 'pods "%s" not found' % name)
            budgets = [b for b in self.wl("poddisruptionbudgets").values() if b["metadata"]["namespace"] == ns
                       and selector_matches(b["spec"].get("selector"), pod["metadata"].get("labels"))]
            if len(budgets) > 1:
                return 500, k8s_status(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the "
                                       "eviction subresource does not support.")
            if budgets and pod["status"].get("phase") == "Running":
                st = budgets[0]["status"]
                unhealthy_ok = not self.pod_ready(pod) and st["currentHealthy"] >= st["desiredHealthy"]
                if not unhealthy_ok and st["disruptionsAllowed"] <= 0:
                    body = k8s_status(429, "TooManyRequests", PDB_VIOLATION)
                    body["details"] = {"causes": [{"reason": "DisruptionBudget", "message":
                                                   "The disruption budget %s needs %d healthy pods and has %d currently"
                                                   % (budgets[0]["metadata"]["name"], st["desiredHealthy"], st["currentHealthy"])}]}
                    return 429, body
            del self.wl("pods")[ns + "/" + name]
            log("info", "Evicted pod %s/%s from node %s" % (ns, name, pod["spec"].get("nodeName")))
            self.reconcile()
            self.save()
            return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def pod_row(o, wide=False):
    st = o.get("status", {})
    cs = st.get("containerStatuses") or []
    ready = "%d/%d" % (sum(1 for c in cs if c.get("ready")), len(o["spec"].get("containers") or []))
    row = [o["metadata"]["name"], ready, st.get("phase", "Pending"), "0", age(o["metadata"]["creationTimestamp"])]
    if wide:
        row += [st.get("podIP", "<none>"), o["spec"].get("nodeName", "<none>"), "<none>", "<none>"]
    return row


def pdb_row(o, wide=False):
    s = o["spec"]
    return [o["metadata"]["name"], str(s.get("minAvailable", "N/A")), str(s.get("maxUnavailable", "N/A")),
            str(o.get("status", {}).get("disruptionsAllowed", 0)), age(o["metadata"]["creationTimestamp"])]


class Store(Workloads):
    def __init__(self, path, cluster_init, grace):
        self.path, self.lock, self.grace = path, threading.RLock(), grace
        self.state = {"rv": 1, "clusterInit": cluster_init, "nodes": {}, "namespaces": {},
                      "helmcharts": {}, "jobs": {}, "addons": {}, "created": time.time()}
        self.heartbeats = {}
        self.own = None  # the node name of the server holding this store
        self.etcd_seen = {}  # member -> last sign of life of its etcd (heartbeat)
        if os.path.exists(path):
            try:
                with open(path) as f:
                    self.state.update(json.load(f))
            except (OSError, ValueError) as e:
                log("warning", "ignoring unreadable datastore %s: %s" % (path, e))
        # etcd's cluster ID: a new one after every --cluster-reset, so members holding the old
        # cluster's data cannot rejoin until their db is removed.
        self.state.setdefault("clusterID", uuid.uuid4().hex[:16])
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.ensure_namespace(ns)
        # After a restart (e.g. an upgrade) nodes keep their last reported state until the
        # grace period runs out, as they would in a real apiserver.
        for name, node in self.state["nodes"].items():
            self.heartbeats[name] = (time.time(), bool(node.get("ready")))
        for name in self.state.get("etcdMembers", []):
            self.etcd_seen[name] = time.time()
        self.save()

    def bump(self):
        self.state["rv"] += 1
        return str(self.state["rv"])

    def save(self):
        with self.lock:
            write_file(self.path, json.dumps(self.state), 0o600)

    def meta(self, name, namespace=None, labels=None):
        m = {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": self.bump(),
             "creationTimestamp": now_rfc3339()}
        if namespace:
            m["namespace"] = namespace
        if labels is not None:
            m["labels"] = labels
        return m

    def ensure_namespace(self, name):
        with self.lock:
            if name not in self.state["namespaces"]:
                self.state["namespaces"][name] = {
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": self.meta(name, labels={"kubernetes.io/metadata.name": name}),
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
                return True
        return False

    # --- nodes ---
    def register(self, ident, password, etcd, local=False):
        name = ident["name"]
        pw_hash = hashlib.sha256(password.encode()).hexdigest()
        with self.lock:
            node = self.state["nodes"].get(name)
            if node and node.get("password") and node["password"] != pw_hash and not local:
                return None
            if node:
                # A deleted node-password Secret, or the server's own node (k3s checks the
                # local node against its local password file): the current password is kept.
                node["password"] = pw_hash
            labels = {
                "beta.kubernetes.io/arch": ident["arch"], "beta.kubernetes.io/instance-type": "k3s",
                "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": ident["arch"],
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "k3s",
            }
            if ident["role"] == "server":
                labels["node-role.kubernetes.io/control-plane"] = "true"
                labels["node-role.kubernetes.io/master"] = "true"
                if etcd:
                    labels["node-role.kubernetes.io/etcd"] = "true"
                    members = self.state.setdefault("etcdMembers", [])
                    if name not in members:
                        members.append(name)
            if node is None:
                # Labels and taints from flags apply at registration only, as in k3s.
                labels.update(ident["labels"])
                node = {"password": pw_hash, "obj": {
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": self.meta(name, labels=labels),
                    "spec": {"podCIDR": "10.42.%d.0/24" % (len(self.state["nodes"]) % 256),
                             "podCIDRs": ["10.42.%d.0/24" % (len(self.state["nodes"]) % 256)],
                             "providerID": "k3s://" + name}}, "ready": False}
                if ident["taints"]:
                    node["obj"]["spec"]["taints"] = ident["taints"]
                self.state["nodes"][name] = node
            else:
                node["obj"]["metadata"]["labels"].update(labels)
                node["obj"]["metadata"]["resourceVersion"] = self.bump()
            obj = node["obj"]
            obj["metadata"]["annotations"] = {
                "k3s.io/hostname": name, "k3s.io/internal-ip": ident["ip"],
                "k3s.io/node-args": json.dumps(ident["nodeArgs"]),
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            }
            cap = {"cpu": ident["cpu"], "ephemeral-storage": "30298176Ki", "memory": ident.get("memory", "4025016Ki"), "pods": "110"}
            node["status"] = {
                "addresses": [{"type": "InternalIP", "address": ident["ip"]}, {"type": "Hostname", "address": name}],
                "allocatable": dict(cap), "capacity": cap,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"architecture": ident["arch"], "bootID": ident["bootID"],
                             "containerRuntimeVersion": ident["runtime"], "kernelVersion": ident["kernel"],
                             "kubeProxyVersion": ident["version"], "kubeletVersion": ident["version"],
                             "machineID": ident["machineID"], "operatingSystem": "linux",
                             "osImage": ident["osImage"], "systemUUID": ident["machineID"]},
            }
            self.heartbeats[name] = (time.time(), False)
            if name in self.state.get("etcdMembers", []):
                self.etcd_seen[name] = time.time()
            self.save()
            return self.node_json(name)

    def heartbeat(self, name, password, ready, leaving=False, etcd_peer=False):
        with self.lock:
            node = self.state["nodes"].get(name)
            if node is None:
                return 404
            if node["password"] != hashlib.sha256(password.encode()).hexdigest():
                return 403
            if leaving:
                # The server's etcd stopped: its peers see the connection close at once.
                self.etcd_seen.pop(name, None)
                return 200
            if etcd_peer:
                # etcd's own peer traffic: a member is back before its kubelet registers.
                if name in self.state.get("etcdMembers", []):
                    self.etcd_seen[name] = time.time()
                return 200
            self.heartbeats[name] = (time.time(), bool(ready))
            self.etcd_seen[name] = time.time()
            if node.get("ready") != bool(ready):
                node["ready"] = bool(ready)
                self.save()
            return 200

    def node_state(self, name):
        hb = self.heartbeats.get(name)
        if hb is None or time.time() - hb[0] > self.grace:
            return "Unknown"
        return "True" if hb[1] else "False"

    def node_json(self, name):
        with self.lock:
            node = self.state["nodes"][name]
            st = self.node_state(name)
            if node.get("condition") != st:
                node["condition"], node["transition"] = st, now_rfc3339()
                node["obj"]["metadata"]["resourceVersion"] = self.bump()
            obj = json.loads(json.dumps(node["obj"]))
            status = json.loads(json.dumps(node.get("status", {})))
            hb = now_rfc3339(self.heartbeats.get(name, (time.time(), False))[0])
            conds = []
            for ctype, ok_reason, ok_msg in (
                    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available")):
                if st == "Unknown":
                    conds.append(self.cond(ctype, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", hb, node))
                else:
                    conds.append(self.cond(ctype, "False", ok_reason, ok_msg, hb, node))
            if st == "True":
                conds.append(self.cond("Ready", "True", "KubeletReady", "kubelet is posting ready status", hb, node))
            elif st == "False":
                conds.append(self.cond("Ready", "False", "KubeletNotReady",
                                       "container runtime network not ready: NetworkReady=false "
                                       "reason:NetworkPluginNotReady message:Network plugin returns error: "
                                       "cni plugin not initialized", hb, node))
            else:
                conds.append(self.cond("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", hb, node))
            status["conditions"] = conds
            obj["status"] = status
            taints = [t for t in obj["spec"].get("taints", []) if not t["key"].startswith("node.kubernetes.io/")]
            if st == "Unknown":
                taints += [{"key": "node.kubernetes.io/unreachable", "effect": e, "timeAdded": node["transition"]} for e in ("NoSchedule", "NoExecute")]
            elif st == "False":
                taints += [{"key": "node.kubernetes.io/not-ready", "effect": e, "timeAdded": node["transition"]} for e in ("NoSchedule", "NoExecute")]
            if obj["spec"].get("unschedulable"):
                taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": node["transition"]})
            if taints:
                obj["spec"]["taints"] = taints
            else:
                obj["spec"].pop("taints", None)
            return obj

    @staticmethod
    def cond(ctype, status, reason, message, hb, node):
        return {"type": ctype, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": hb, "lastTransitionTime": node.get("transition", hb)}

    def nodes(self):
        with self.lock:
            return [self.node_json(n) for n in sorted(self.state["nodes"])]

    def patch_node(self, name, patch):
        with self.lock:
            node = self.state["nodes"].get(name)
            if node is None:
                return None
            obj = node["obj"]
            for part in ("metadata", "spec"):
                if part in patch:
                    allowed = {k: v for k, v in patch[part].items() if part == "spec" or k in ("labels", "annotations")}
                    obj[part] = merge_patch(obj[part], allowed)
            obj["metadata"]["resourceVersion"] = self.bump()
            self.save()
            return self.node_json(name)

    def delete_node(self, name):
        with self.lock:
            node = self.state["nodes"].pop(name, None)
            self.heartbeats.pop(name, None)
            self.reconcile()  # pod GC: the node's pods go (their controllers recreate them elsewhere)
            # k3s's etcd member controller: deleting a server's Node removes its etcd member.
            members = self.state.get("etcdMembers", [])
            if name in members:
                members.remove(name)
                log("info", "Removed etcd member %s (its node was deleted)" % name)
            self.save()
            return node is not None

    # --- embedded etcd ---
    def quorum(self):
        """(healthy members, members, has quorum). A member is healthy while it heartbeats
        (the store's own server always is); quorum is a majority of the members."""
        with self.lock:
            members = list(self.state.get("etcdMembers", []))
            if not members:
                return 0, 0, True
            # etcd peers notice a dead member within seconds (election timeout), much sooner
            # than the node lifecycle marks its Node Unknown.
            now = time.time()
            healthy = [m for m in members if m == self.own or now - self.etcd_seen.get(m, 0) < ETCD_PEER_TIMEOUT]
            return len(healthy), len(members), len(healthy) > len(members) // 2

    # --- auto-deploy manifests ---
    def apply_manifest(self, doc, source):
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        name = meta.get("name")
        if not kind or not name:
            log("warning", "skipping object without kind/name in %s" % source)
            return
        # The chart lookup talks to the mirror: done before taking the store lock.
        install_error = helm_install_error(doc) if kind == "HelmChart" else None
        with self.lock:
            if kind == "Namespace":
                self.ensure_namespace(name)
            elif kind == "HelmChart" and str(doc.get("apiVersion", "")).startswith("helm.cattle.io/"):
                ns = meta.get("namespace") or "default"
                obj = {"apiVersion": doc["apiVersion"], "kind": "HelmChart",
                       "metadata": self.meta(name, ns, meta.get("labels") or {}),
                       "spec": doc.get("spec") or {}, "status": {}}
                if meta.get("annotations"):
                    obj["metadata"]["annotations"] = meta["annotations"]
                old = self.state["helmcharts"].get(ns + "/" + name)
                if old:
                    obj["metadata"]["uid"] = old["metadata"]["uid"]
                    obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"]
                self.state["helmcharts"][ns + "/" + name] = obj
                self.deploy_chart(obj, install_error)
            else:
                log("info", "applied %s %s from %s" % (kind, name, source))
            self.save()

    def deploy_chart(self, chart, install_error=None):
        """What k3s's helm-controller does with a HelmChart: status JobCreated=True and Failed=False
        (it never reports the install's outcome there), and Job helm-install-NAME (backoffLimit
        1000, restartPolicy OnFailure). A failing install is that Job's pod crash-looping, helm's
        error only in the pod's log; a good one completes. For gitlab-runner the chart's Deployment
        follows, and a runner that refuses its values crash-loops there after a good install.
        install_error: what helm_install_error() found (fetched outside the store lock)."""
        ns, name = chart["metadata"]["namespace"], chart["metadata"]["name"]
        spec = chart["spec"]
        target = spec.get("targetNamespace") or ns
        job = "helm-install-" + name
        if not spec.get("chart") and not spec.get("chartContent"):
            chart["status"] = {}  # the helm-controller leaves such a HelmChart alone
            return
        chart["status"] = {"jobName": job, "conditions": [
            {"type": "JobCreated", "status": "True", "reason": "Job created",
             "message": "Applying HelmChart using Job %s/%s" % (ns, job)},
            {"type": "Failed", "status": "False"}]}
        error = install_error
        if error is None and target not in self.state["namespaces"]:
            if spec.get("createNamespace"):
                self.ensure_namespace(target)
            else:
                error = 'Error: INSTALLATION FAILED: create: failed to create: namespaces "%s" not found' % target
        self.forget_chart_objects(ns, name)
        t = now_rfc3339()
        job_obj = {"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": self.meta(job, ns, {CHART_LABEL: name}),
                   "spec": {"backoffLimit": 1000, "completions": 1, "parallelism": 1},
                   "status": {"startTime": t, "succeeded": 1, "completionTime": t, "conditions": [
                       {"type": "Complete", "status": "True", "lastTransitionTime": t}]}}
        self.state["jobs"][ns + "/" + job] = job_obj
        if error is not None:
            job_obj["status"] = {"startTime": t, "active": 1, "ready": 0, "uncountedTerminatedPods": {}}
            labels = {CHART_LABEL: name, "batch.kubernetes.io/job-name": job, "job-name": job}
            pod = self.new_pod("%s-%s" % (job, rand_suffix()), ns, {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "OnFailure", "serviceAccountName": "helm-" + name,
                         "containers": [{"name": "helm", "image": KLIPPER_HELM_IMAGE}],
                         "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                         {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                                          "effect": "NoSchedule"}]}},
                {"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": job_obj["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True})
            self.state.setdefault("crashloops", {})[ns + "/" + pod["metadata"]["name"]] = {
                "run": HELM_RUN_SECONDS, "exit": 1, "kind": "helm", "lines": helm_job_lines(chart, target, error)}
            self.reconcile()
            return
        if spec.get("chart") == "gitlab-runner":
            self.deploy_runner(ns, name, target, spec)

    def deploy_runner(self, ns, name, target, spec):
        """The gitlab-runner chart's Deployment (its fullname is the release name when that holds
        the chart's name); its pod registers the runner, and crash-loops when the runner refuses."""
        labels = {"app": name, "release": name, "chart": "gitlab-runner-%s" % (spec.get("version") or ""), "heritage": "Helm"}
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": self.meta(name, target, labels),
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name, "release": name}},
                                     "spec": {"containers": [{"name": name, "image": RUNNER_IMAGE}]}}},
               "status": {}}
        dep["metadata"]["generation"] = 1
        self.wl("deployments")[target + "/" + name] = dep
        self.state.setdefault("chart_objects", {})[ns + "/" + name] = ["deployments:%s/%s" % (target, name)]
        try:
            values = yaml_load(spec.get("valuesContent") or "") or {}
        except YamlError:
            values = {}
        refusal = runner_values_error(values) if isinstance(values, dict) else None
        if refusal:
            self.state.setdefault("crashloops", {})["deployment:%s/%s" % (target, name)] = {
                "run": RUNNER_REGISTER_ATTEMPTS * RUNNER_REGISTER_SLEEP, "exit": 1, "kind": "runner", "lines": refusal}
        self.reconcile()

    def forget_chart_objects(self, ns, name):
        """What helm uninstall (or the Job's replacement on a changed chart) takes away: the old
        Job's pods and the release's objects."""
        loops = self.state.setdefault("crashloops", {})
        job = "helm-install-" + name
        for key, pod in list(self.wl("pods").items()):
            owner = controller_of(pod)
            if pod["metadata"]["namespace"] == ns and owner and owner["kind"] == "Job" and owner["name"] == job:
                del self.wl("pods")[key]
                loops.pop(key, None)
        for ref in self.state.setdefault("chart_objects", {}).pop(ns + "/" + name, []):
            resource, key = ref.split(":", 1)
            self.wl(resource).pop(key, None)
            loops.pop("deployment:" + key, None)
        self.reconcile()

    def delete_chart(self, ns, name):
        with self.lock:
            obj = self.state["helmcharts"].pop(ns + "/" + name, None)
            self.forget_chart_objects(ns, name)
            self.state["jobs"].pop(ns + "/helm-install-" + name, None)
            self.reconcile()
            self.save()
            return obj


# ----------------------------------------------------------------------------------------------
# The helm-install job's work: find the chart in its repository, then what the chart (and, for
# gitlab-runner, the runner it starts) refuses in the values. Messages are helm's and the runner's.
# ----------------------------------------------------------------------------------------------

CHART_REPO_TIMEOUT = 5  # seconds for one index fetch from the mirror
CHART_LABEL = "helmcharts.helm.cattle.io/chart"
KLIPPER_HELM_IMAGE = "rancher/klipper-helm:v0.9.4-build20250113"
HELM_RUN_SECONDS = 2  # one klipper-helm run until helm's error
# The kubelet's restart back-off for a failing container: 10 s, doubling, capped at 5 min.
CRASHLOOP_BACKOFF_FIRST = 10
CRASHLOOP_BACKOFF_CAP = 300
# The gitlab-runner chart's register-the-runner script: 30 attempts, 5 s apart, then exit 1.
RUNNER_REGISTER_ATTEMPTS = 30
RUNNER_REGISTER_SLEEP = 5
RUNNER_VERSION = "17.5.0"
RUNNER_REVISION = "8ec04662"
RUNNER_IMAGE = "registry.gitlab.com/gitlab-org/gitlab-runner:alpine-v" + RUNNER_VERSION

# What gitlab-runner (16.0+) refuses at `register` when given a glrt- authentication token, and
# the chart values that become those flags (chart values.yaml: runners.tags -> --tag-list, ...).
RUNNER_RESERVED_VALUES = {"tags": "--tag-list", "locked": "--locked", "runUntagged": "--run-untagged",
                          "maximumTimeout": "--maximum-timeout", "protected": "--access-level",
                          "paused": "--paused", "maintenanceNote": "--maintenance-note"}
RUNNER_RESERVED_FATAL = (
    "FATAL: Runner configuration other than name and executor configuration is reserved (specifically --locked, "
    "--access-level, --run-untagged, --maximum-timeout, --paused, --tag-list, and --maintenance-note) "
    "and cannot be specified when registering with a runner authentication token. "
    "This configuration is specified on the GitLab server. "
    "Please try again without specifying any of those arguments. "
    "For more information, see https://docs.gitlab.com/ci/runners/new_creation_workflow/"
    "#changes-to-the-gitlab-runner-register-command-syntax")
# GitLab 17.0+ disables registration tokens: POST /api/v4/runners answers 410 Gone.
RUNNER_LEGACY_TOKEN_ERROR = (
    "ERROR: Registering runner... failed status=410 Gone (runnerRegistrationToken: runner registration "
    "tokens are disabled on this GitLab; create the runner in GitLab and give its glrt- token as runnerToken)")


def chart_mirror():
    """Base URL of the chart repositories (the mirror's /charts/), or /etc/k3s-sim/chart-mirror."""
    return sim_setting("chart-mirror", SIM_BUILD.get("charts", ""))


def repo_unreachable(repo, why):
    return 'looks like "%s" is not a valid chart repository or cannot be reached: %s' % (repo, why)


def chart_lookup_error(spec):
    """helm's repository lookup (`helm install --repo R --version V C`), or None when found.
    A chart given as a URL (k3s's own traefik) or inline (chartContent) needs no repository."""
    repo, chart, version = spec.get("repo"), spec.get("chart"), str(spec.get("version") or "")
    if not repo or not chart or "://" in str(chart):
        return None
    repo = str(repo).rstrip("/")
    index_url = repo + "/index.yaml"
    base = chart_mirror()
    if not base:
        return repo_unreachable(repo, 'Get "%s": no chart mirror is configured for this host' % index_url)
    u = urllib.parse.urlsplit(repo)
    url = base.rstrip("/") + "/" + (u.netloc + u.path).strip("/") + "/index.yaml"
    try:
        with urllib.request.urlopen(url, timeout=CHART_REPO_TIMEOUT) as resp:
            index = yaml_load(resp.read().decode())
    except urllib.error.HTTPError as e:
        return repo_unreachable(repo, "failed to fetch %s : %d %s" % (index_url, e.code, e.reason))
    except (OSError, ValueError, YamlError) as e:
        return repo_unreachable(repo, 'Get "%s": %s' % (index_url, getattr(e, "reason", e)))
    entries = ((index or {}).get("entries") or {}).get(chart) or []
    versions = [str(entry.get("version")) for entry in entries if isinstance(entry, dict)]
    # No version: helm takes the newest release (no pre-releases). Only exact versions are
    # matched here, not semver ranges.
    found = version in versions if version else any("-" not in v for v in versions)
    if found:
        return None
    what = 'chart "%s"' % chart + (' version "%s"' % version if version else "")
    return "%s not found in %s repository" % (what, repo)


def runner_values_error(values):
    """What the runner prints when `gitlab-runner register` refuses these chart values (one
    registration attempt's lines after its banner), or None."""
    if values.get("runnerRegistrationToken"):
        return [RUNNER_LEGACY_TOKEN_ERROR, "PANIC: Failed to register the runner."]
    token = str(values.get("runnerToken") or "")
    runners = values.get("runners") if isinstance(values.get("runners"), dict) else {}
    reserved = [key for key in RUNNER_RESERVED_VALUES if runners.get(key) not in (None, "", [])]
    if token.startswith("glrt-") and reserved:
        return [RUNNER_RESERVED_FATAL]
    return None


def helm_job_lines(chart, target, error):
    """What a failing klipper-helm run prints (its entrypoint runs under `set -x`)."""
    spec = chart["spec"]
    name = chart["metadata"]["name"]
    ref = "%s/%s" % (name, spec.get("chart")) if spec.get("repo") else str(spec.get("chart"))
    lines = ["+ echo 'Installing helm_v3 chart'", "Installing helm_v3 chart"]
    if spec.get("repo"):
        lines += ["+ helm_v3 repo add %s %s" % (name, spec["repo"])]
    version = " --version %s" % spec["version"] if spec.get("version") else ""
    lines += ["+ helm_v3 install --namespace %s%s %s %s --values /config/values-01_HelmChart.yaml" % (target, version, name, ref),
              error if error.startswith(("Error:", "ERROR:")) else "Error: INSTALLATION FAILED: " + error]
    return lines


def crashloop_lines(loop, elapsed):
    """A crash-looping container's log after `elapsed` seconds of its current run. helm fails
    once; the gitlab-runner chart's register script tries RUNNER_REGISTER_ATTEMPTS times,
    RUNNER_REGISTER_SLEEP s apart, then exits 1."""
    if loop["kind"] != "runner":
        return list(loop["lines"])
    lines = []
    attempts = min(RUNNER_REGISTER_ATTEMPTS, 1 + int(elapsed // RUNNER_REGISTER_SLEEP))
    for i in range(1, attempts + 1):
        lines += ["Registration attempt %d of %d" % (i, RUNNER_REGISTER_ATTEMPTS),
                  "Runtime platform                                    arch=amd64 os=linux pid=%d revision=%s version=%s"
                  % (6 + i, RUNNER_REVISION, RUNNER_VERSION)] + list(loop["lines"])
    return lines


def helm_install_error(doc):
    """Why the helm-install job of this HelmChart fails, as its log says it, or None."""
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        return None
    error = chart_lookup_error(spec)
    if error:
        return "Error: INSTALLATION FAILED: " + error
    try:
        values = yaml_load(spec.get("valuesContent") or "") or {}
    except YamlError as e:
        return "Error: failed to parse /config/values-01_HelmChart.yaml: %s" % e
    if not isinstance(values, dict):
        return None
    return None


def scan_manifests(store, mdir):
    """k3s's deploy controller: apply every manifest, again whenever its content changes."""
    try:
        entries = []
        for root, _, files in os.walk(mdir):
            for f in files:
                if f.endswith((".yaml", ".yml", ".json")) and not os.path.exists(os.path.join(root, f + ".skip")):
                    entries.append(os.path.join(root, f))
    except OSError:
        return
    for path in sorted(entries):
        text = read_text(path)
        if text is None:
            continue
        digest = hashlib.sha256(text.encode()).hexdigest()
        if store.state["addons"].get(path) == digest:
            continue
        try:
            docs = [json.loads(text)] if path.endswith(".json") else yaml_load_all(text)
        except (YamlError, ValueError) as e:
            log("error", "failed to parse manifest %s: %s" % (path, e))
            store.state["addons"][path] = digest
            continue
        for doc in docs:
            items = doc.get("items", []) if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
            for item in items:
                if isinstance(item, dict):
                    store.apply_manifest(item, path)
        with store.lock:
            store.state["addons"][path] = digest
            store.save()
        log("info", "Applied manifest %s" % path)


TRAEFIK_MANIFEST = """apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: traefik-crd
  namespace: kube-system
spec:
  chart: https://%{KUBERNETES_API}%/static/charts/traefik-crd-27.0.201+up27.0.2.tgz
---
apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: traefik
  namespace: kube-system
spec:
  chart: https://%{KUBERNETES_API}%/static/charts/traefik-27.0.201+up27.0.2.tgz
  set:
    global.systemDefaultRegistry: ""
  valuesContent: |-
    deployment:
      podAnnotations:
        prometheus.io/port: "8082"
        prometheus.io/scrape: "true"
"""


# ----------------------------------------------------------------------------------------------
# Table output shared by the server (for real kubectl) and the built-in kubectl.
# ----------------------------------------------------------------------------------------------

def age(ts):
    try:
        secs = int(time.time() - time.mktime(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")) + time.mktime(time.gmtime(0)))
    except (TypeError, ValueError):
        return "<unknown>"
    secs = max(secs, 0)
    if secs < 120:
        return "%ds" % secs
    if secs < 600:
        return "%dm%ds" % (secs // 60, secs % 60) if secs % 60 else "%dm" % (secs // 60)
    if secs < 3 * 3600:
        return "%dm" % (secs // 60)
    if secs < 48 * 3600:
        return "%dh" % (secs // 3600)
    return "%dd" % (secs // 86400)


def node_row(n, wide=False):
    ready = next((c["status"] for c in n["status"].get("conditions", []) if c["type"] == "Ready"), "Unknown")
    status = "Ready" if ready == "True" else "NotReady"
    if n["spec"].get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in n["metadata"].get("labels", {}) if k.startswith("node-role.kubernetes.io/"))
    row = [n["metadata"]["name"], status, ",".join(roles) or "<none>", age(n["metadata"]["creationTimestamp"]),
           n["status"]["nodeInfo"]["kubeletVersion"]]
    if wide:
        ip = next((a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"), "<none>")
        info = n["status"]["nodeInfo"]
        row += [ip, "<none>", info["osImage"], info["kernelVersion"], info["containerRuntimeVersion"]]
    return row


TABLES = {
    "nodes": (["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
              ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"], node_row),
    "namespaces": (["NAME", "STATUS", "AGE"], [], lambda o, wide=False: [
        o["metadata"]["name"], o["status"]["phase"], age(o["metadata"]["creationTimestamp"])]),
    "helmcharts": (["NAME", "JOB", "CHART", "TARGETNAMESPACE", "VERSION", "REPO", "HELMVERSION", "BOOTSTRAP"], [],
                   lambda o, wide=False: [o["metadata"]["name"], o.get("status", {}).get("jobName", ""),
                                          o["spec"].get("chart", ""), o["spec"].get("targetNamespace", ""),
                                          o["spec"].get("version", ""), o["spec"].get("repo", ""),
                                          o["spec"].get("helmVersion", ""), str(o["spec"].get("bootstrap", ""))]),
    "jobs": (["NAME", "COMPLETIONS", "DURATION", "AGE"], [], lambda o, wide=False: [
        o["metadata"]["name"], "%d/1" % o["status"].get("succeeded", 0), "1s", age(o["metadata"]["creationTimestamp"])]),
    "pods": (["NAME", "READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"], pod_row),
    "deployments": (["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], [], lambda o, wide=False: [
        o["metadata"]["name"], "%d/%d" % (o["status"].get("readyReplicas", 0), o["spec"].get("replicas", 1)),
        str(o["status"].get("updatedReplicas", 0)), str(o["status"].get("availableReplicas", 0)), age(o["metadata"]["creationTimestamp"])]),
    "replicasets": (["NAME", "DESIRED", "CURRENT", "READY", "AGE"], [], lambda o, wide=False: [
        o["metadata"]["name"], str(o["spec"].get("replicas", 1)), str(o["status"].get("replicas", 0)),
        str(o["status"].get("readyReplicas", 0)), age(o["metadata"]["creationTimestamp"])]),
    "daemonsets": (["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"], [],
                   lambda o, wide=False: [o["metadata"]["name"]] + [str(o["status"].get(k, 0)) for k in (
                       "desiredNumberScheduled", "currentNumberScheduled", "numberReady", "updatedNumberScheduled",
                       "numberAvailable")] + [",".join("%s=%s" % kv for kv in ((o["spec"].get("template") or {}).get("spec") or {}).get(
                           "nodeSelector", {}).items()) or "<none>", age(o["metadata"]["creationTimestamp"])]),
    "poddisruptionbudgets": (["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"], [], pdb_row),
}


def table_json(resource, items, wide, include_object):
    base, extra, rowf = TABLES[resource]
    cols = base + extra
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": ""},
            "columnDefinitions": [{"name": c.title() if c != "NAME" else "Name", "type": "string",
                                   "format": "name" if c == "NAME" else "", "description": c,
                                   "priority": 1 if c in extra else 0} for c in cols],
            "rows": [{"cells": rowf(o, True), "object": o if include_object == "Object" else {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}
                for o in items]}


# ----------------------------------------------------------------------------------------------
# The HTTPS API server.
# ----------------------------------------------------------------------------------------------

API_RESOURCES = {
    "v1": [("nodes", "Node", False, ["no"]), ("namespaces", "Namespace", False, ["ns"]),
           ("pods", "Pod", True, ["po"]), ("pods/eviction", "Eviction", True, [])],
    "helm.cattle.io/v1": [("helmcharts", "HelmChart", True, []), ("helmchartconfigs", "HelmChartConfig", True, [])],
    "batch/v1": [("jobs", "Job", True, [])],
    "apps/v1": [("deployments", "Deployment", True, ["deploy"]), ("daemonsets", "DaemonSet", True, ["ds"]),
                ("replicasets", "ReplicaSet", True, ["rs"])],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"])],
}
API_RESOURCES["v1"].append(("secrets", "Secret", True, []))  # node-password Secrets only


class TLSServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, ctx, app):
        self.ctx, self.app = ctx, app
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # Handshake in the worker thread, so one slow client never blocks accept().
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.RequestHandlerClass(tls, client_address, self)


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "k3s-sim"

    def log_message(self, fmt, *args):
        pass

    # send_json/send_text return True ("answered"): a handler that may decline a request
    # returns what they return, so its caller never writes a second response on a kept-alive
    # connection (a client then reads that stray answer as the reply to its next request).
    def send_json(self, code, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        return True

    def send_text(self, code, text, ctype="text/plain"):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return True

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def basic_secret(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                return base64.b64decode(auth[6:]).decode().split(":", 1)[1]
            except (ValueError, IndexError):
                return None
        return None

    def client_cert_ok(self):
        try:
            return bool(self.connection.getpeercert())
        except (AttributeError, ValueError):
            return False

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")

    def do_PUT(self):
        self.route("PUT")

    def route(self, method):
        app = self.server.app
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path.rstrip("/") or "/", dict(urllib.parse.parse_qsl(url.query))
        try:
            if path == "/cacerts":
                return self.send_text(200, read_text(app.ca_file), "text/plain")
            if path in ("/ping", "/healthz", "/readyz", "/livez"):
                if path == "/readyz" and app.store and not app.store.quorum()[2]:
                    return self.send_text(500, "[-]etcd failed: etcdserver: request timed out\nreadyz check failed")
                return self.send_text(200, "ok" if path != "/ping" else "pong")
            # Heartbeats carry the node's own credential (its node password, checked by the
            # store), like a kubelet's client certificate: a token rotation does not cut them.
            heartbeat = re.fullmatch(r"/v1-k3s/sim/nodes/[^/]+/heartbeat", path) is not None
            if heartbeat:
                pass
            elif path.startswith("/v1-k3s/") or path == "/db/snapshot":
                if self.basic_secret() != app.secret and not self.client_cert_ok():
                    return self.send_json(401, k8s_status(401, "Unauthorized", "Unauthorized"))
            elif not self.client_cert_ok():
                return self.send_json(401, k8s_status(401, "Unauthorized", "Unauthorized"))
            if path == "/db/snapshot" and method == "POST":
                return self.snapshot()
            if app.upstream:
                return self.proxy(method)
            bootstrap = path == "/v1-k3s/server-bootstrap"  # served from the member's own data
            if app.store and not heartbeat and not bootstrap and not app.store.quorum()[2]:
                # etcd without quorum: the apiserver's requests time out (k8s answers 500 with
                # etcd's error after its own timeout); registration of joining servers too.
                time.sleep(2)
                return self.send_json(500, k8s_status(500, "InternalError", "etcdserver: request timed out"))
            return self.local(method, path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def snapshot(self):
        """k3s's supervisor endpoint behind `k3s etcd-snapshot`; sqlite has no snapshots."""
        app = self.server.app
        if app.store and not app.store.state["clusterInit"]:
            log("error", "etcd datastore disabled")
            return self.send_json(500, k8s_status(500, "InternalError", "etcd datastore disabled"))
        try:
            return self.send_json(200, snapshot_request(app, self.body_json() or {}))
        except (ValueError, OSError) as e:
            log("error", "Failed to take etcd snapshot: %s" % e)
            return self.send_json(500, k8s_status(500, "InternalError", str(e)))

    def proxy(self, method):
        app = self.server.app
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
        try:
            status, rheaders, data = app.upstream.request(method, self.path, body, headers)
        except OSError as e:
            return self.send_json(503, k8s_status(503, "ServiceUnavailable", "upstream server unavailable: %s" % e))
        self.send_response(status)
        for k, v in rheaders:
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def local(self, method, path, query):
        app, store = self.server.app, self.server.app.store
        parts = path.strip("/").split("/")
        if method == "DELETE":
            self.body_json()  # DeleteOptions: read, so the kept-alive connection stays in step
        if path == "/version":
            major, minor = VERSION.lstrip("v").split(".")[:2]
            return self.send_json(200, {"major": major, "minor": minor, "gitVersion": VERSION,
                                        "gitCommit": hashlib.sha1(VERSION.encode()).hexdigest(),
                                        "gitTreeState": "clean", "buildDate": "2024-12-10T20:00:00Z",
                                        "goVersion": RUNTIMES.get(minor_of(VERSION), ("", "go1.22.9"))[1],
                                        "compiler": "gc", "platform": "linux/" + arch()})
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "%s:%d" % (primary_ip(), app.port)}]})
        if path == "/apis":
            groups = []
            for gv in API_RESOURCES:
                if "/" in gv:
                    g, v = gv.split("/")
                    groups.append({"name": g, "versions": [{"groupVersion": gv, "version": v}],
                                   "preferredVersion": {"groupVersion": gv, "version": v}})
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        gv = "v1" if parts[0] == "api" and len(parts) == 2 else "/".join(parts[1:3]) if parts[0] == "apis" and len(parts) == 3 else None
        if gv in API_RESOURCES:
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                dict({"name": n, "singularName": "" if "/" in n else k.lower(), "namespaced": ns, "kind": k,
                 "verbs": ["create"] if "/" in n else ["create", "delete", "get", "list", "patch", "update", "watch"],
                 "shortNames": sn}, **({"group": "policy", "version": "v1"} if n == "pods/eviction" else {}))
                for n, k, ns, sn in API_RESOURCES[gv]]})
        if path.startswith("/v1-k3s/"):
            return self.k3s_endpoint(method, parts[1:])
        # Resource paths: /api/v1[/namespaces/NS]/RES[/NAME] and /apis/G/V[/namespaces/NS]/RES[/NAME]
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest:
            return self.send_json(404, k8s_status(404, "NotFound", "the server could not find the requested resource"))
        resource, name = rest[0], (rest[1] if len(rest) > 1 else None)
        if resource == "secrets":
            return self.node_password_secrets(method, ns, name)
        items = self.collection(resource, ns, query)
        if items is None:
            return self.send_json(404, k8s_status(404, "NotFound", "the server could not find the requested resource"))
        kind = {"nodes": "Node", "namespaces": "Namespace", "helmcharts": "HelmChart", "jobs": "Job"}.get(resource) or WORKLOADS[resource][1]
        group = {"helmcharts": "helm.cattle.io", "jobs": "batch"}.get(resource) or WORKLOADS.get(resource, ("", "", "."))[2][1:]
        if resource == "pods" and name and len(rest) > 2 and rest[2] == "log" and method == "GET":
            return self.pod_log(ns or "default", name, query)
        if resource in WORKLOADS and self.workload(method, resource, ns, name, rest):
            return True
        if name is None:
            if method != "GET":
                return self.send_json(405, k8s_status(405, "MethodNotAllowed", "method not allowed"))
            if "as=Table" in self.headers.get("Accept", ""):
                return self.send_json(200, table_json(resource, items, False, query.get("includeObject")))
            api_version = {"helmcharts": "helm.cattle.io/v1", "jobs": "batch/v1"}.get(resource) or WORKLOADS.get(resource, ("v1",))[0]
            return self.send_json(200, {"kind": kind + "List", "apiVersion": api_version,
                                        "metadata": {"resourceVersion": str(store.state["rv"])}, "items": items})
        obj = next((o for o in items if o["metadata"]["name"] == name), None)
        if obj is None:
            return self.send_json(404, k8s_status(404, "NotFound", '%s%s "%s" not found' % (resource, "." + group if group else "", name)))
        if method == "GET":
            if "as=Table" in self.headers.get("Accept", ""):
                return self.send_json(200, table_json(resource, [obj], False, query.get("includeObject")))
            return self.send_json(200, obj)
        if method == "PATCH" and resource == "nodes":
            patch = self.body_json()
            if isinstance(patch, list):  # JSON patch: only the ops kubectl sends to nodes
                merged = {}
                for op in patch:
                    keys = [k.replace("~1", "/").replace("~0", "~") for k in op.get("path", "").strip("/").split("/")]
                    cur = merged
                    for k in keys[:-1]:
                        cur = cur.setdefault(k, {})
                    cur[keys[-1]] = op.get("value") if op.get("op") != "remove" else None
                patch = merged
            if not isinstance(patch, dict):
                return self.send_json(400, k8s_status(400, "BadRequest", "invalid patch"))
            return self.send_json(200, store.patch_node(name, patch))
        if method == "DELETE" and resource == "nodes":
            store.delete_node(name)
            return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                                        "details": {"name": name, "kind": "nodes"}})
        if method == "DELETE" and resource == "helmcharts":
            return self.send_json(200, store.delete_chart(obj["metadata"]["namespace"], name))
        return self.send_json(405, k8s_status(405, "MethodNotAllowed", "method %s not supported by the simulator on %s" % (method, resource)))

    def collection(self, resource, ns, query):
        store = self.server.app.store
        with store.lock:
            if resource == "nodes":
                items = store.nodes()
            elif resource == "namespaces":
                items = [store.state["namespaces"][n] for n in sorted(store.state["namespaces"])]
            elif resource in ("helmcharts", "jobs"):
                items = [store.state[resource][k] for k in sorted(store.state[resource])]
                items = [o for o in items if ns is None or o["metadata"]["namespace"] == ns]
            elif resource in WORKLOADS:
                items = store.wl_list(resource, ns)
            else:
                return None
        sel = query.get("labelSelector")
        if sel:
            for term in sel.split(","):
                k, _, v = term.partition("=")
                items = [o for o in items if (o["metadata"].get("labels") or {}).get(k) == v or (not v and k in (o["metadata"].get("labels") or {}))]
        for term in filter(None, query.get("fieldSelector", "").split(",")):
            field, _, want = term.partition("=")
            path = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace"),
                    "spec.nodeName": ("spec", "nodeName"), "status.phase": ("status", "phase")}.get(field)
            if path:
                items = [o for o in items if str((o.get(path[0]) or {}).get(path[1], "")) == want.lstrip("=")]
        return json.loads(json.dumps(items))

    def node_password_secrets(self, method, ns, name):
        """k3s keeps each node's password hash in kube-system/<node>.node-password.k3s; deleting
        it lets the node register with a new password (the simulator has no other Secrets)."""
        store = self.server.app.store
        with store.lock:
            items = [] if ns not in (None, "kube-system") else [
                {"apiVersion": "v1", "kind": "Secret", "type": "k3s.cattle.io/node-password",
                 "metadata": {"name": n + ".node-password.k3s", "namespace": "kube-system"}}
                for n in sorted(store.state["nodes"]) if store.state["nodes"][n].get("password")]
            if name is None:
                return self.send_json(200, {"kind": "SecretList", "apiVersion": "v1", "items": items})
            node = name[:-len(".node-password.k3s")] if name.endswith(".node-password.k3s") else None
            if not any(o["metadata"]["name"] == name for o in items):
                return self.send_json(404, k8s_status(404, "NotFound", 'secrets "%s" not found' % name))
            if method == "DELETE":
                store.state["nodes"][node]["password"] = None
                store.save()
                return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
            return self.send_json(200, next(o for o in items if o["metadata"]["name"] == name))

    def member_ip(self, name):
        node = self.server.app.store.state["nodes"].get(name) or {}
        return (node.get("obj", {}).get("metadata", {}).get("annotations") or {}).get("k3s.io/internal-ip", "")
    def pod_log(self, ns, name, query):
        """GET pods/NAME/log: the container's output, as the kubelet keeps it (current or
        `previous` instance; `tailLines`). Only crash-looping containers say anything here."""
        store = self.server.app.store
        with store.lock:
            store.reconcile()
            pod = store.wl("pods").get(ns + "/" + name)
            if pod is None:
                return self.send_json(404, k8s_status(404, "NotFound", 'pods "%s" not found' % name))
            containers = [c.get("name") for c in pod["spec"].get("containers") or []]
            container = query.get("container") or (containers[0] if len(containers) == 1 else None)
            if container is None:
                return self.send_json(400, k8s_status(400, "BadRequest", "a container name must be specified for pod %s, "
                                                      "choose one of: [%s]" % (name, " ".join(containers))))
            if container not in containers:
                return self.send_json(400, k8s_status(400, "BadRequest", "container %s is not valid for pod %s" % (container, name)))
            lines, err = store.container_log(pod, query.get("previous") == "true")
        if err:
            return self.send_json(400, k8s_status(400, "BadRequest", err))
        tail = query.get("tailLines")
        if tail and tail.isdigit():
            lines = lines[-int(tail):] if int(tail) else []
        return self.send_text(200, "".join(line + "\n" for line in lines))

    def workload(self, method, resource, ns, name, rest):
        """Create/patch/replace/delete of workload objects and the pods/eviction subresource:
        True once answered, None when the generic GET path answers."""
        store = self.server.app.store
        group = WORKLOADS[resource][2]
        if name is None and method == "POST":
            body = self.body_json()
            if not isinstance(body, dict):
                return self.send_json(400, k8s_status(400, "BadRequest", "invalid body"))
            code, obj = store.wl_create(resource, ns, body)
            return self.send_json(code, obj)
        if name is None:
            return None
        if len(rest) > 2 and rest[2] == "eviction" and resource == "pods":
            if method != "POST":
                return self.send_json(405, k8s_status(405, "MethodNotAllowed", "method not allowed"))
            self.body_json()  # the Eviction object: its deleteOptions change nothing here
            code, obj = store.evict(ns or "default", name)
            return self.send_json(code, obj)
        if method in ("PATCH", "PUT"):
            patch = self.body_json()
            if not isinstance(patch, dict):
                return self.send_json(400, k8s_status(400, "BadRequest", "invalid patch"))
            obj = store.wl_patch(resource, ns or "default", name, patch)
            if obj is None:
                return self.send_json(404, k8s_status(404, "NotFound", '%s%s "%s" not found' % (resource, group, name)))
            return self.send_json(200, obj)
        if method == "DELETE":
            obj = store.wl_delete(resource, ns or "default", name)
            if obj is None:
                return self.send_json(404, k8s_status(404, "NotFound", '%s%s "%s" not found' % (resource, group, name)))
            return self.send_json(200, obj if resource == "pods" else {"kind": "Status", "apiVersion": "v1", "status": "Success",
                                                                       "details": {"name": name, "kind": resource}})
        return None

    def k3s_endpoint(self, method, parts):
        app, store = self.server.app, self.server.app.store
        if parts == ["token"] and method == "PUT":
            # k3s token rotate: re-encrypt the bootstrap data with the new token and write the
            # token files; nodes must be restarted with the new token (k3s prints the same).
            req = self.body_json() or {}
            new = split_token(str(req.get("newToken") or ""))[1]
            if not new:
                return self.send_json(400, k8s_status(400, "BadRequest", "new token is required"))
            with store.lock:
                app.secret = new
                store.state["bootstrapTokenHash"] = token_key(new)
                store.state["bootstrapData"] = bootstrap_seal(new, os.path.dirname(app.ca_file))
                store.save()
            write_server_tokens(app.server_dir, app.ca_file, new)
            log("info", "Server token rotated")
            return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if parts == ["server-bootstrap"]:
            return self.send_json(200, {"ca_crt": read_text(app.ca_file), "ca_key": read_text(app.ca_key),
                                        "secret": app.secret, "cluster_init": store.state["clusterInit"],
                                        "cluster_id": store.state.get("clusterID"),
                                        "members": ["%s=https://%s:2380" % (m, self.member_ip(m))
                                                    for m in store.state.get("etcdMembers", [])]})
        if parts == ["sim", "datastore"] and method == "GET":
            # A joined server's snapshot: the simulated store lives on the first server.
            with store.lock:
                return self.send_json(200, store.state)
        if parts == ["sim", "nodes"] and method == "POST":
            req = self.body_json() or {}
            kubelet = req.get("ident", {}).get("version", "")
            if minor_key(kubelet) > minor_key(VERSION):
                # Version skew policy: a kubelet may not be newer than the API server.
                return self.send_json(400, k8s_status(400, "BadRequest",
                                      "kubelet version %s is newer than the API server version %s: "
                                      "unsupported version skew" % (kubelet, VERSION)))
            if req.get("ident", {}).get("role") == "server" and not store.state["clusterInit"]:
                return self.send_json(400, k8s_status(400, "BadRequest", "this server uses sqlite; only servers started with --cluster-init can be joined"))
            node = store.register(req["ident"], req["password"], store.state["clusterInit"])
            if node is None:
                return self.send_json(403, k8s_status(403, "Forbidden",
                                      "Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' "
                                      "may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag"))
            return self.send_json(200, node)
        if len(parts) == 4 and parts[:2] == ["sim", "nodes"] and parts[3] == "heartbeat":
            req = self.body_json() or {}
            code = store.heartbeat(parts[2], req.get("password", ""), req.get("ready"), bool(req.get("leaving")),
                                   bool(req.get("etcdPeer")))
            return self.send_json(code, {"code": code})
        return self.send_json(404, k8s_status(404, "NotFound", "not found"))


class Upstream:
    """HTTPS client to a k3s server, trusting only the cluster CA (verified against the token)."""

    def __init__(self, url, ca_file, cert=None, secret=None, user="node"):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 6443
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.ctx.check_hostname = False  # like k3s: the token's CA hash pins the server
        if cert:
            self.ctx.load_cert_chain(*cert)
        self.auth = "Basic " + base64.b64encode(("%s:%s" % (user, secret)).encode()).decode() if secret else None

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        try:
            h = dict(headers or {})
            if self.auth and "Authorization" not in h:
                h["Authorization"] = self.auth
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                h["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, r.getheaders(), r.read()
        finally:
            conn.close()

    def json(self, method, path, body=None):
        status, _, data = self.request(method, path, body)
        try:
            return status, json.loads(data or b"null")
        except ValueError:
            return status, {"message": data.decode(errors="replace")}


def fetch_cacerts(url, token):
    """Download /cacerts and check it against the CA hash of a secure token (k3s does the same)."""
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection(u.hostname, u.port or 6443, context=ctx, timeout=10)
    try:
        conn.request("GET", "/cacerts")
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    if r.status != 200:
        raise OSError("GET /cacerts: %d" % r.status)
    want, _ = split_token(token)
    got = hashlib.sha256(data).hexdigest()
    if want and want != got:
        raise JoinRefused("token CA hash does not match the Cluster CA certificate hash: %s != %s" % (want, got))
    return data


class JoinRefused(Exception):
    """The server refused the join (k3s logs it and tries again; it never gives up)."""


# ----------------------------------------------------------------------------------------------
# server / agent processes
# ----------------------------------------------------------------------------------------------

class App:
    upstream = None
    store = None


def memory_cgroup_missing():
    """A Raspberry Pi boots without the memory cgroup unless cmdline.txt enables it.

    The lab shares one kernel, so the simulator models the Pi firmware: the flags count once
    cmdline.txt has them and the host has booted since the file was written (/run/lab/boot_id
    is written at every lab boot). /etc/k3s-sim/memory-cgroup forces the check off.
    """
    model = read_text("/sys/firmware/devicetree/base/model") or ""
    if "Raspberry Pi" not in model or os.path.exists(os.path.join(SIM_CONF, "memory-cgroup")):
        return False
    # What k3s itself reads: a Pi look-alike's /proc/cgroups shows memory disabled when it booted
    # without the flags or with `scripts/lab pi-memory HOST off` (a kernel that ignores them).
    for line in (read_text("/proc/cgroups") or "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "memory" and fields[3] == "0":
            return True
    path = next((p for p in ("/boot/firmware/cmdline.txt", "/boot/cmdline.txt") if os.path.exists(p)), None)
    words = (read_text(path) or "").split() if path else []
    if "cgroup_memory=1" not in words or "cgroup_enable=memory" not in words:
        return True
    try:
        return os.stat(path).st_mtime > os.stat("/run/lab/boot_id").st_mtime
    except OSError:
        return False


def common_start(cfg, role):
    if fault("crashloop"):
        fatal("k3s-sim fault crashloop: simulated %s crash on startup" % role)
    if memory_cgroup_missing():
        fatal("Error: failed to find memory cgroup (v2)")
    data_dir = cfg.get("data-dir") or "/var/lib/rancher/k3s"
    runtime_dirs = ["/run/k3s/containerd"] if data_dir == "/var/lib/rancher/k3s" else []
    for d in runtime_dirs + [os.path.join(data_dir, "agent", "images"), os.path.join(data_dir, "data")]:
        try:
            os.makedirs(d, exist_ok=True)
        except OSError:
            pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log("info", "Starting k3s %s %s (simulator)" % (role, VERSION))
    # k3s turns on packet forwarding at start (pkg/agent/syssetup), as the CNI needs it. Not
    # for a private --data-dir (the local tests run the simulator on the workstation itself).
    forward_keys = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")
    for key in forward_keys if not cfg.get("data-dir") else ():
        try:
            with open("/proc/sys/" + key, "w") as f:
                f.write("1")
        except OSError as e:
            log("warning", "Failed to set sysctl %s: %s" % (key.replace("/", "."), e))
    if slow_factor() > 1:
        # A Pi spends its first tens of seconds importing images and starting etcd/containerd.
        time.sleep(slow_factor())
    return data_dir


def join_with_retry(url, token, what):
    """Like k3s's agent: validate the server (CA bundle vs the token's CA hash) every 2 s until
    it works. A refusal is logged and retried, never fatal; systemd never hears READY=1."""
    while True:
        try:
            return fetch_cacerts(url, token)
        except JoinRefused as e:
            log("error", "Failed to validate connection to cluster at %s: %s" % (url, e))
        except OSError as e:
            u = urllib.parse.urlsplit(url)
            log("error", "Failed to validate connection to cluster at %s: failed to get CA certs: "
                "Get \"%s/cacerts\": dial tcp %s:%s: %s" % (url, url, u.hostname, u.port or 6443, os_reason(e)))
        time.sleep(2 * slow_factor())


def os_reason(e):
    """The Go net error words for a Python socket error."""
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "i/o timeout"
    if getattr(e, "errno", None) == 113:
        return "connect: no route to host"
    if getattr(e, "errno", None) == 101:
        return "connect: network is unreachable"
    return str(e)


def slow_factor():
    """The slow-boards knob (`scripts/lab k3s-fault HOST slow N`): this host's k3s timings times
    N, toward a Raspberry Pi's tens of seconds (start, Ready, join retries)."""
    try:
        with open(os.path.join(SIM_CONF, "faults", "slow")) as f:
            return max(1.0, float(f.read().strip() or "1"))
    except (OSError, ValueError):
        return 1.0


def node_loop(client, ident, password, readiness, on_ready):
    """kubelet-like registration + status heartbeats against a server."""
    registered = False
    while True:
        try:
            if not registered:
                status, body = client.json("POST", "/v1-k3s/sim/nodes", {"ident": ident, "password": password})
                if status in (401, 403) or (status == 400 and ident["role"] == "agent"):
                    # k3s: "Waiting to retrieve agent configuration; server is not ready: ..." every
                    # 5 s, forever, without READY=1 (so `systemctl start` never returns).
                    why = ("https://%s:%s/v1-k3s/serving-kubelet.crt: 401 Unauthorized" % (client.host, client.port)
                           if status == 401 else body.get("message"))
                    log("info", "Waiting to retrieve agent configuration; server is not ready: %s" % why)
                    time.sleep(5 * slow_factor())
                    continue
                if status == 400:
                    fatal("Error: %s" % body.get("message"))
                if status != 200:
                    raise OSError("registration returned %d" % status)
                registered = True
                log("info", "Node %s registered with the cluster" % ident["name"])
                on_ready()
            status, _ = client.json("POST", "/v1-k3s/sim/nodes/%s/heartbeat" % ident["name"],
                                    {"password": password, "ready": readiness.ready()})
            if status == 404 and ident["role"] == "server" and ident.get("etcd"):
                # Deleting a server's Node removed its etcd member: that etcd cannot go on.
                fatal("etcd error: the member has been permanently removed from the cluster")
            if status == 404:
                registered = False  # deleted: the kubelet re-creates its Node
                continue
            if status == 401:
                fatal("Error: server rejected the node credentials (401 Unauthorized)")
        except OSError as e:
            log("warning", "Unable to reach server: %s" % e)
        time.sleep(HEARTBEAT_SECONDS)


def run_server(cfg):
    data_dir = common_start(cfg, "server")
    server_dir = os.path.join(data_dir, "server")
    tls = os.path.join(server_dir, "tls")
    app = App()
    app.port = int(cfg.get("https-listen-port") or 6443)
    app.ca_file, app.ca_key = os.path.join(tls, "server-ca.crt"), os.path.join(tls, "server-ca.key")
    join_url = cfg.get("server")
    token = str(cfg.get("token") or "")
    os.makedirs(tls, exist_ok=True)
    if join_url:
        if not token:
            fatal("--token is required when joining a server (--server)")
        ca = join_with_retry(join_url, token, "server")
        write_file(os.path.join(tls, "join-ca.crt"), ca, 0o644)
        boot = Upstream(join_url, os.path.join(tls, "join-ca.crt"), secret=split_token(token)[1], user="server")
        while True:
            try:
                status, data = boot.json("GET", "/v1-k3s/server-bootstrap")
                break
            except OSError as e:
                log("info", "Waiting for server bootstrap data: %s" % e)
                time.sleep(HEARTBEAT_SECONDS)
        if status == 401:
            fatal("Error: failed to get server bootstrap data from %s: 401 Unauthorized (token is not valid)" % join_url)
        if status != 200:
            fatal("Error: failed to get server bootstrap data: %d" % status)
        if not data["cluster_init"]:
            fatal("Error: server %s uses sqlite and cannot be joined; start the first server with --cluster-init" % join_url)
        member_file = os.path.join(server_dir, "db", "etcd", "sim-member.json")
        try:
            with open(member_file) as f:
                joined_id = json.load(f).get("clusterID")
        except (OSError, ValueError):
            joined_id = None
        if joined_id and data.get("cluster_id") and joined_id != data["cluster_id"]:
            # This member's etcd data belongs to a cluster that was reset (restored): etcd cannot
            # rejoin, k3s keeps testing the datastore and never becomes ready, until the db is
            # removed (k3s: "Backup and delete ${datadir}/server/db on each peer etcd server").
            me = "%s=https://%s:2380" % (cfg.get("node-name") or socket.gethostname(),
                                         (cfg.get("node-ip") or [None])[0] or primary_ip())
            while True:
                log("info", "Failed to test data store connection: this server is a not a member of the etcd "
                    "cluster. Found [%s], expect: %s" % (" ".join(data.get("members") or []), me))
                time.sleep(5 * slow_factor())
        write_file(member_file, json.dumps({"clusterID": data.get("cluster_id")}), 0o600)
        if (read_text(app.ca_file) or data["ca_crt"]) != data["ca_crt"]:
            # The cluster's CA changed (a restore brought another one back): certificates it
            # did not sign are made again from it, as k3s regenerates them at start.
            clean_leaf_certs(tls)
        write_file(app.ca_file, data["ca_crt"], 0o644)
        write_file(app.ca_key, data["ca_key"], 0o600)
        app.secret = data["secret"]
    else:
        make_ca(tls)
        stored = (read_text(os.path.join(server_dir, "token")) or "").strip()
        app.secret = split_token(token)[1] if token else (split_token(stored)[1] if stored else secrets.token_hex(16))
        if cfg.get("cluster-reset-restore-path"):
            restore_snapshot(cfg, server_dir, app.secret, tls)
        # k3s encrypts the bootstrap data with a key derived from the token: once written, a
        # server started with another token cannot read it and exits (k3s-io/k3s#4640).
        db_path = os.path.join(server_dir, "db", "sim-state.json")
        try:
            with open(db_path) as f:
                bound = json.load(f).get("bootstrapTokenHash")
        except (OSError, ValueError):
            bound = None
        if bound and bound != token_key(app.secret):
            fatal("Error: preparing server: failed to bootstrap cluster data: failed to reconcile with local "
                  "datastore: bootstrap data already found and encrypted with different token")
    write_server_tokens(server_dir, app.ca_file, app.secret)
    crt, key = make_serving_cert(tls, cfg, socket.gethostname())
    admin = make_admin_cert(tls)
    kc_mode = int(str(cfg.get("write-kubeconfig-mode") or "600"), 8)
    kc_path = cfg.get("write-kubeconfig") or "/etc/rancher/k3s/k3s.yaml"
    write_kubeconfig(kc_path, kc_mode, tls, app.port)
    log("info", "Wrote kubeconfig %s" % kc_path)

    cluster_init = bool(cfg.get("cluster-init"))
    if join_url:
        app.upstream = Upstream(join_url, app.ca_file, cert=admin)
    else:
        app.store = Store(os.path.join(server_dir, "db", "sim-state.json"), cluster_init,
                          float(sim_setting("heartbeat-grace", "8")))
        cluster_init = app.store.state["clusterInit"]
        # Versions: the datastore remembers the newest k3s that ran on it. Kubernetes does not
        # support downgrades or skipping a minor on the control plane (upgrades go one minor at
        # a time); the simulator refuses both at start (wording its own, see docs/K3S-SIM.md).
        written = app.store.state.get("datastoreVersion")
        if written and minor_key(written) > minor_key(VERSION):
            fatal("Error: preparing server: the datastore was written by k3s %s, a newer minor than %s: "
                  "downgrades are not supported" % (written, VERSION))
        if written and minor_key(VERSION)[1] > minor_key(written)[1] + 1:
            fatal("Error: preparing server: upgrading from %s to %s skips a minor version, which is not "
                  "supported: upgrade one minor at a time" % (written, VERSION))
        if not written or minor_key(VERSION) >= minor_key(written):
            app.store.state["datastoreVersion"] = VERSION
            app.store.save()
        if cfg.get("cluster-reset"):
            # k3s --cluster-reset: this server becomes the only etcd member, then k3s exits.
            name = cfg.get("node-name") or socket.gethostname()
            app.store.state["etcdMembers"] = [name]
            app.store.state["clusterID"] = uuid.uuid4().hex[:16]
            app.store.save()
            log("info", "Managed etcd cluster membership has been reset, restart without --cluster-reset "
                "flag now. Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes")
            sys.exit(0)
        if (app.store.state.get("bootstrapTokenHash") != token_key(app.secret)
                or (app.store.state.get("bootstrapData") or {}).get("tokenHash") != token_key(app.secret)):
            app.store.state["bootstrapTokenHash"] = token_key(app.secret)
            app.store.state["bootstrapData"] = bootstrap_seal(app.secret, tls)
            app.store.save()
    app.server_dir = server_dir
    app.node_name = cfg.get("node-name") or socket.gethostname()
    if join_url:
        app.upstream_server = Upstream(join_url, app.ca_file, secret=app.secret, user="server")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    ctx.load_verify_locations(app.ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    try:
        httpd = TLSServer((cfg.get("bind-address") or "0.0.0.0", app.port), ApiHandler, ctx, app)
    except OSError as e:
        fatal("failed to listen on %s:%d: %s" % (cfg.get("bind-address") or "0.0.0.0", app.port, e))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    log("info", "Running kube-apiserver (simulated) on port %d" % app.port)

    ident = node_identity(cfg, "server")
    ident["etcd"] = bool(join_url) or cluster_init  # joined servers are etcd members
    password = node_password(data_dir)
    readiness = Readiness()
    ready_once = threading.Event()

    def notify():
        if not ready_once.is_set():
            ready_once.set()
            sd_notify("READY=1")
            log("info", "k3s is up and running")

    if app.store:
        mdir = os.path.join(server_dir, "manifests")
        os.makedirs(mdir, exist_ok=True)
        disabled = set(cfg.get("disable", []))
        traefik = os.path.join(mdir, "traefik.yaml")
        if "traefik" in disabled:
            if os.path.exists(traefik):
                os.remove(traefik)
        else:
            write_file(traefik, TRAEFIK_MANIFEST, 0o600)

        def manifests():
            while True:
                scan_manifests(app.store, mdir)
                with app.store.lock:  # workload controllers and the scheduler
                    app.store.reconcile()
                    app.store.save()
                time.sleep(HEARTBEAT_SECONDS)
        threading.Thread(target=manifests, daemon=True).start()
        app.store.own = ident["name"]
        if app.store.register(ident, password, cluster_init, local=True) is None:
            fatal("Node password rejected for %s" % ident["name"])
        notify()
        while True:
            app.store.heartbeat(ident["name"], password, readiness.ready())
            time.sleep(HEARTBEAT_SECONDS)
    client = Upstream(join_url, app.ca_file, secret=app.secret, user="server")

    def stop(*_):
        try:
            client.json("POST", "/v1-k3s/sim/nodes/%s/heartbeat" % ident["name"],
                        {"password": password, "leaving": True})
        except OSError:
            pass
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)

    def etcd_peer():
        while True:
            try:
                client.json("POST", "/v1-k3s/sim/nodes/%s/heartbeat" % ident["name"],
                            {"password": password, "etcdPeer": True})
            except OSError:
                pass
            time.sleep(HEARTBEAT_SECONDS)
    threading.Thread(target=etcd_peer, daemon=True).start()
    node_loop(client, ident, password, readiness, notify)


def run_agent(cfg):
    data_dir = common_start(cfg, "agent")
    url, token = cfg.get("server"), str(cfg.get("token") or "")
    if not url:
        fatal("--server is required")
    if not token:
        fatal("--token is required")
    ca = join_with_retry(url, token, "agent")
    agent_dir = os.path.join(data_dir, "agent")
    ca_file = os.path.join(agent_dir, "server-ca.crt")
    write_file(ca_file, ca, 0o644)
    client = Upstream(url, ca_file, secret=split_token(token)[1], user="node")
    ident = node_identity(cfg, "agent")
    node_loop(client, ident, node_password(data_dir), Readiness(), lambda: sd_notify("READY=1"))


# ----------------------------------------------------------------------------------------------
# kubectl (the subset edgeops and operators use)
# ----------------------------------------------------------------------------------------------

RESOURCE_ALIASES = {
    "node": "nodes", "nodes": "nodes", "no": "nodes", "namespace": "namespaces", "namespaces": "namespaces",
    "ns": "namespaces", "helmchart": "helmcharts", "helmcharts": "helmcharts", "helmcharts.helm.cattle.io": "helmcharts",
    "helmchart.helm.cattle.io": "helmcharts", "job": "jobs", "jobs": "jobs", "jobs.batch": "jobs",
    "pod": "pods", "pods": "pods", "po": "pods",
    "deployment": "deployments", "deployments": "deployments", "deploy": "deployments", "deployments.apps": "deployments",
    "daemonset": "daemonsets", "daemonsets": "daemonsets", "ds": "daemonsets", "daemonsets.apps": "daemonsets",
    "replicaset": "replicasets", "replicasets": "replicasets", "rs": "replicasets",
    "poddisruptionbudget": "poddisruptionbudgets", "poddisruptionbudgets": "poddisruptionbudgets", "pdb": "poddisruptionbudgets",
}
NAMESPACED = {"helmcharts", "jobs", "pods", "deployments", "daemonsets", "replicasets", "poddisruptionbudgets"}
# Node-password Secrets (backup/restore region): kube-system/<node>.node-password.k3s.
RESOURCE_ALIASES.update({"secret": "secrets", "secrets": "secrets"})
NAMESPACED.add("secrets")


class KubectlError(Exception):
    pass


def kube_client(kubeconfig):
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if not path:
        path = "/etc/rancher/k3s/k3s.yaml" if os.access("/etc/rancher/k3s/k3s.yaml", os.R_OK) else os.path.expanduser("~/.kube/config")
    text = read_text(path)
    if text is None:
        if os.path.exists("/etc/rancher/k3s/k3s.yaml"):
            raise KubectlError("error: error loading config file \"/etc/rancher/k3s/k3s.yaml\": open /etc/rancher/k3s/k3s.yaml: permission denied")
        raise KubectlError("The connection to the server localhost:8080 was refused - did you specify the right host or port?")
    cfg = yaml_load(text) or {}
    ctx_name = cfg.get("current-context")
    ctx = next((c["context"] for c in cfg.get("contexts", []) if c["name"] == ctx_name), None) or cfg["contexts"][0]["context"]
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    tmp = os.path.join("/tmp", "k3s-sim-kubectl-%d" % os.getpid())
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    try:
        files = {}
        for key in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
            p = os.path.join(tmp, key)
            write_file(p, base64.b64decode(user.get(key) or cluster.get(key) or ""), 0o600)
            files[key] = p
        ctx_ssl = ssl.create_default_context(cafile=files["certificate-authority-data"])
        ctx_ssl.load_cert_chain(files["client-certificate-data"], files["client-key-data"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    u = urllib.parse.urlsplit(cluster["server"])
    return u.hostname, u.port or 443, ctx_ssl


def kube_request(client, method, path, body=None, ctype="application/json", raw=False):
    """One API request; the decoded JSON answer, or with `raw` its text (pods/NAME/log)."""
    host, port, ctx = client
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=15)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": ctype, "Accept": "application/json"})
        r = conn.getresponse()
        data = r.read()
    except (OSError, ssl.SSLError) as e:
        raise KubectlError("The connection to the server %s:%d was refused - did you specify the right host or port? (%s)" % (host, port, e))
    finally:
        conn.close()
    if raw and r.status < 400:
        return data.decode(errors="replace")
    try:
        obj = json.loads(data)
    except ValueError:
        obj = {"message": data.decode(errors="replace")}
    if r.status >= 400:
        raise KubectlError("Error from server (%s): %s" % (obj.get("reason", r.status), obj.get("message", "")))
    return obj


def resource_path(resource, ns, name=None):
    base = {"helmcharts": "/apis/helm.cattle.io/v1", "jobs": "/apis/batch/v1"}.get(resource) or \
        ("/apis/" + WORKLOADS[resource][0] if resource in WORKLOADS and resource != "pods" else "/api/v1")
    p = base + ("/namespaces/%s" % ns if ns and resource in NAMESPACED else "") + "/" + resource
    return p + ("/" + name if name else "")


def print_table(resource, items, wide, all_ns, ns):
    if not items:
        where = " in %s namespace" % ns if resource in NAMESPACED and not all_ns else ""
        sys.stderr.write("No resources found%s.\n" % where)
        return
    base, extra, rowf = TABLES[resource]
    cols = base + (extra if wide else [])
    rows = [rowf(o, wide)[:len(cols)] for o in items]
    if all_ns and resource in NAMESPACED:
        cols = ["NAMESPACE"] + cols
        rows = [[o["metadata"]["namespace"]] + r for o, r in zip(items, rows)]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    for r in [cols] + rows:
        print("   ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())


def jsonpath(obj, expr):
    """A small JSONPath subset: {.a.b}, {.items[*].metadata.name}, {range}-free templates."""
    def walk(vals, path):
        for tok in re.findall(r"\.([^.\[\]]+)|\[(\*|\d+|\?\(@\.[^)]*\))\]", path):
            key, idx = tok
            nxt = []
            for v in vals:
                if key:
                    if isinstance(v, dict) and key in v:
                        nxt.append(v[key])
                elif idx == "*":
                    nxt.extend(v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else [])
                elif idx.startswith("?"):
                    m = re.fullmatch(r"\?\(@\.([\w.]+)==[\"']([^\"']*)[\"']\)", idx)
                    for x in (v if isinstance(v, list) else []):
                        cur = x
                        for k in m.group(1).split(".") if m else []:
                            cur = cur.get(k) if isinstance(cur, dict) else None
                        if m and str(cur) == m.group(2):
                            nxt.append(x)
                elif isinstance(v, list) and int(idx) < len(v):
                    nxt.append(v[int(idx)])
            vals = nxt
        return vals

    def fmt(v):
        return json.dumps(v) if isinstance(v, (dict, list)) else ("true" if v is True else "false" if v is False else str(v))

    out = ""
    if re.search(r"\{\s*(range|end)\b", expr):
        raise KubectlError("error: jsonpath {range} is not supported by the k3s simulator's kubectl")
    for lit, expr_ in re.findall(r"([^{]*)(?:\{([^}]*)\})?", expr):
        out += lit.replace("\\n", "\n")
        if expr_:
            out += " ".join(fmt(v) for v in walk([obj], expr_.strip()))
    return out


def parse_duration(text, default):
    """Go's time.ParseDuration for the forms kubectl users type: 90s, 5m, 1m30s, 2h, 0."""
    if text in (None, ""):
        return default
    if re.fullmatch(r"\d+", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise KubectlError('error: invalid argument "%s" for "--timeout" flag: time: invalid duration "%s"' % (text, text))
    return sum(float(a) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[b] for a, b in parts)


def go_duration(secs):
    """How Go prints a time.Duration (kubectl's messages use it): 30s, 1m30s, 2h0m0s."""
    secs = int(secs)
    if secs < 60:
        return "%ds" % secs
    if secs < 3600:
        return "%dm%ds" % (secs // 60, secs % 60)
    return "%dh%dm%ds" % (secs // 3600, secs % 3600 // 60, secs % 60)


def kubectl_apply(client, verb, files, ns_flag):
    """`kubectl apply|create -f FILE|-`: create what is missing; apply also patches what exists."""
    docs = []
    for f in files:
        text = sys.stdin.read() if f == "-" else read_text(f)
        if text is None:
            raise KubectlError('error: the path "%s" does not exist' % f)
        docs += [(f, d) for d in yaml_load_all(text) if d]
    for f, doc in docs:
        kind = doc.get("kind", "")
        resource = {"Namespace": "namespaces", "HelmChart": "helmcharts"}.get(kind) or KIND_TO_RESOURCE.get(kind)
        if resource is None:
            raise KubectlError('error: resource mapping not found for name: "%s" namespace: "" from "%s": no matches for kind "%s" in version "%s"'
                               % ((doc.get("metadata") or {}).get("name", ""), f, kind, doc.get("apiVersion", "")))
        name = (doc.get("metadata") or {}).get("name", "")
        ns = (doc.get("metadata") or {}).get("namespace") or ns_flag or "default"
        label = "%s%s/%s" % (kind.lower(), {"apps/v1": ".apps", "policy/v1": ".policy"}.get(doc.get("apiVersion"), ""), name)
        if resource == "namespaces":
            path, coll = "/api/v1/namespaces/" + name, "/api/v1/namespaces"
        else:
            base = "/api/v1" if doc.get("apiVersion") == "v1" else "/apis/" + doc.get("apiVersion", "")
            coll = "%s/namespaces/%s/%s" % (base, ns, resource)
            path = coll + "/" + name
        try:
            current = kube_request(client, "GET", path)
        except KubectlError as e:
            if "NotFound" not in str(e):
                raise
            current = None
        if current is None:
            kube_request(client, "POST", coll, doc)
            print("%s created" % label)
        elif verb == "create":
            raise KubectlError('Error from server (AlreadyExists): error when creating "%s": %s%s "%s" already exists'
                               % (f, resource, WORKLOADS.get(resource, ("", "", ""))[2], name))
        elif all(merge_patch(current.get(p) or {}, doc.get(p) or {}) == (current.get(p) or {}) for p in ("spec",)):
            print("%s unchanged" % label)
        else:
            kube_request(client, "PATCH", path, {"metadata": {"labels": (doc.get("metadata") or {}).get("labels") or {}},
                                                 "spec": doc.get("spec") or {}}, "application/merge-patch+json")
            print("%s configured" % label)
    return 0


def kubectl_drain(client, node, flags):
    """kubectl drain (k8s.io/kubectl/pkg/drain and cmd/drain): cordon, filter the node's pods,
    evict them (retrying budget refusals every 5 s) within --timeout, wait until they are gone."""
    timeout = parse_duration(flags.get("timeout"), 0)
    try:
        obj = kube_request(client, "GET", resource_path("nodes", None, node))
    except KubectlError as e:
        raise KubectlError(str(e).replace("nodes.", "nodes"))
    if obj["spec"].get("unschedulable"):
        print("node/%s already cordoned" % node)
    else:
        kube_request(client, "PATCH", resource_path("nodes", None, node), {"spec": {"unschedulable": True}},
                     "application/strategic-merge-patch+json")
        print("node/%s cordoned" % node)
    sys.stdout.flush()

    def pods_for_deletion():
        pods = kube_request(client, "GET", "/api/v1/pods?fieldSelector=" + urllib.parse.quote("spec.nodeName=" + node))["items"]
        # kubectl's filters in its order; the first that refuses or skips a pod decides, and
        # a pod keeps the warning of the last filter that let it through with one.
        order = ["DaemonSet-managed Pods (use --ignore-daemonsets to ignore)", "ignoring DaemonSet-managed Pods",
                 "Pods with local storage (use --delete-emptydir-data to override)", "deleting Pods with local storage",
                 "cannot delete Pods that declare no controller (use --force to override)",
                 "deleting Pods that declare no controller"]
        deletable, fatal, warn = [], {}, {}
        for p in pods:
            ref = "%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"])
            owner = controller_of(p)
            if owner and owner.get("kind") == "DaemonSet":
                if "--ignore-daemonsets" in flags:
                    warn.setdefault(order[1], []).append(ref)
                else:
                    fatal.setdefault(order[0], []).append(ref)
                continue
            warning = None
            if any("emptyDir" in v for v in p["spec"].get("volumes") or []):
                if "--delete-emptydir-data" not in flags and "--delete-local-data" not in flags:
                    fatal.setdefault(order[2], []).append(ref)
                    continue
                warning = order[3]
            if owner is None:
                if "--force" not in flags:
                    fatal.setdefault(order[4], []).append(ref)
                    continue
                warning = order[5]
            if warning:
                warn.setdefault(warning, []).append(ref)
            deletable.append(p)
        fatal = {m: fatal[m] for m in order if m in fatal}
        warn = {m: warn[m] for m in order if m in warn}
        errors = ["cannot delete %s: %s" % (msg, ", ".join(refs)) for msg, refs in fatal.items()]
        return deletable, errors, "; ".join("%s: %s" % (m, ", ".join(r)) for m, r in warn.items())

    pods, errors, warnings = pods_for_deletion()
    if errors:
        err = errors[0] if len(errors) == 1 else "[%s]" % ", ".join(errors)
        sys.stderr.write("error: unable to drain node \"%s\" due to error: %s, continuing command...\n"
                         "There are pending nodes to be drained:\n %s\n" % (node, err, node))
        raise KubectlError("\n".join(errors))
    if warnings:
        sys.stderr.write("Warning: %s\n" % warnings)
    deadline = time.time() + timeout if timeout else None
    pending = {p["metadata"]["uid"]: p for p in pods}
    failures = []
    retry_at = {uid: 0.0 for uid in pending}
    evicted = set()
    while pending:
        now = time.time()
        for uid, p in list(pending.items()):
            ns, name = p["metadata"]["namespace"], p["metadata"]["name"]
            if deadline and now >= deadline:
                what = "waiting for pod \"%s\" in namespace \"%s\" to terminate" % (name, ns) if uid in evicted \
                    else "evicting pods/\"%s\" -n \"%s\"" % (name, ns)
                failures.append("error when %s: global timeout reached: %s" % (what, go_duration(timeout)))
                del pending[uid]
                continue
            if uid not in evicted:
                if now < retry_at[uid]:
                    continue
                print("evicting pod %s/%s" % (ns, name))  # kubectl says it again on every attempt
                sys.stdout.flush()
                try:
                    if "--disable-eviction" in flags:
                        kube_request(client, "DELETE", "/api/v1/namespaces/%s/pods/%s" % (ns, name))
                    else:
                        kube_request(client, "POST", "/api/v1/namespaces/%s/pods/%s/eviction" % (ns, name),
                                     {"apiVersion": "policy/v1", "kind": "Eviction",
                                      "metadata": {"name": name, "namespace": ns},
                                      "deleteOptions": {"gracePeriodSeconds": int(flags["grace-period"])}
                                      if flags.get("grace-period", "-1") not in ("-1", "") else {}})
                    evicted.add(uid)
                except KubectlError as e:
                    msg = str(e).split(": ", 1)[-1]
                    if "(NotFound)" in str(e):
                        evicted.add(uid)
                    elif "(TooManyRequests)" in str(e):
                        sys.stderr.write("error when evicting pods/\"%s\" -n \"%s\" (will retry after 5s): %s\n" % (name, ns, msg))
                        sys.stderr.flush()
                        retry_at[uid] = now + 5
                        continue
                    else:
                        failures.append("error when evicting pods/\"%s\" -n \"%s\": %s" % (name, ns, msg))
                        del pending[uid]
                        continue
            try:
                cur = kube_request(client, "GET", "/api/v1/namespaces/%s/pods/%s" % (ns, name))
                gone = cur["metadata"]["uid"] != uid
            except KubectlError:
                gone = True
            if gone:
                print("pod/%s %s" % (name, "deleted" if "--disable-eviction" in flags else "evicted"))
                sys.stdout.flush()
                del pending[uid]
        if pending:
            time.sleep(0.5)
    if failures:
        err = failures[0] if len(failures) == 1 else "[%s]" % ", ".join(failures)
        left, _, _ = pods_for_deletion()
        if left:
            sys.stderr.write("There are pending pods in node \"%s\" when an error occurred: %s\n" % (node, err))
            for p in left:
                sys.stderr.write("pod/%s\n" % p["metadata"]["name"])
        sys.stderr.write("error: unable to drain node \"%s\" due to error: %s, continuing command...\n"
                         "There are pending nodes to be drained:\n %s\n" % (node, err, node))
        raise KubectlError("\n".join("error: " + f for f in failures) if len(failures) == 1 else "\n".join(failures))
    print("node/%s drained" % node)
    return 0


KUBECTL_VERBS = "annotate apply cluster-info completion config cordon create delete describe drain edit " \
    "exec get label logs patch rollout scale taint uncordon version wait"


def kubectl_completion(args):
    """`kubectl completion bash|zsh|fish|powershell`: a script the shell can source."""
    if not args:
        raise KubectlError("error: Shell not specified.\nSee 'kubectl completion -h' for help and examples")
    shell = args[0]
    if shell not in ("bash", "zsh", "fish", "powershell"):
        raise KubectlError('error: Unsupported shell type "%s".' % shell)
    if shell == "bash":
        print("# bash completion for kubectl                              -*- shell-script -*-\n"
              "__start_kubectl()\n{\n    local cur=${COMP_WORDS[COMP_CWORD]}\n"
              "    COMPREPLY=( $(compgen -W \"%s\" -- \"$cur\") )\n}\n"
              "complete -o default -F __start_kubectl kubectl" % KUBECTL_VERBS)
    elif shell == "zsh":
        print("#compdef kubectl\ncompdef _kubectl kubectl\n_kubectl() {\n  compadd %s\n}" % KUBECTL_VERBS)
    elif shell == "fish":
        print("# fish completion for kubectl\ncomplete -c kubectl -f -a '%s'" % KUBECTL_VERBS)
    else:
        print("# powershell completion for kubectl\nRegister-ArgumentCompleter -CommandName 'kubectl' -ScriptBlock {}")
    return 0


def kubectl_logs(client, target, ns, flags):
    """`kubectl logs POD | TYPE/NAME [-c C] [--tail N] [-p]`: a Job's or Deployment's first pod,
    as kubectl picks it (saying so on stderr when there are more)."""
    kind, _, name = target.rpartition("/")
    kind = {"": "pod", "pods": "pod", "po": "pod", "jobs": "job", "deployments": "deployment", "deploy": "deployment"}.get(kind, kind)
    if kind == "pod":
        pod = name
    elif kind in ("job", "deployment"):
        owner = kube_request(client, "GET", "/apis/%s/namespaces/%s/%ss/%s" % (
            "batch/v1" if kind == "job" else "apps/v1", ns, kind, name))
        sel = owner["spec"]["selector"]["matchLabels"] if kind == "deployment" else {"job-name": name}
        pods = kube_request(client, "GET", resource_path("pods", ns) + "?labelSelector=" + urllib.parse.quote(
            ",".join("%s=%s" % kv for kv in sorted(sel.items()))))["items"]
        if not pods:
            raise KubectlError("error: timed out waiting for the condition")
        if len(pods) > 1:
            sys.stderr.write("Found %d pods, using pod/%s\n" % (len(pods), pods[0]["metadata"]["name"]))
        pod = pods[0]["metadata"]["name"]
    else:
        raise KubectlError('error: cannot get the logs from %s: selector for %s not implemented (simulator)' % (kind, kind))
    query = {}
    if flags.get("container"):
        query["container"] = flags["container"]
    if flags.get("tail") not in (None, True, "-1"):
        query["tailLines"] = flags["tail"]
    if flags.get("previous") or flags.get("-p") or flags.get("--previous"):
        query["previous"] = "true"
    data = kube_request(client, "GET", resource_path("pods", ns, pod) + "/log" +
                        ("?" + urllib.parse.urlencode(query) if query else ""), raw=True)
    sys.stdout.write(data)
    return 0


def kubectl(argv):
    # `logs` flags with a separate value (`-c helm`, `--tail 20`) in their `=` form.
    argv = list(argv)
    for short, long_ in (("-c", "--container"), ("--container", "--container"), ("--tail", "--tail")):
        while short in argv[:-1]:
            i = argv.index(short)
            argv[i:i + 2] = ["%s=%s" % (long_, argv[i + 1])]
    opts = {"namespace": None, "all": False, "output": "", "kubeconfig": None, "selector": None, "flags": {}, "files": []}
    args, i = [], 0
    while i < len(argv):
        a = argv[i]
        i += 1
        for short, long_ in (("-n", "namespace"), ("-o", "output"), ("-l", "selector")):
            if a == short or a == "--" + long_:
                opts[long_] = argv[i]
                i += 1
                break
            if a.startswith(short) and len(a) > 2 and not a.startswith("--"):
                # pflag: `-ojson`, `-o json` and `-o=json` are the same flag value.
                opts[long_] = a[3:] if a[2] == "=" else a[2:]
                break
            if a.startswith("--%s=" % long_):
                opts[long_] = a.split("=", 1)[1]
                break
        else:
            if a in ("-A", "--all-namespaces"):
                opts["all"] = True
            elif a == "--kubeconfig":
                opts["kubeconfig"] = argv[i]
                i += 1
            elif a.startswith("--kubeconfig="):
                opts["kubeconfig"] = a.split("=", 1)[1]
            elif a.startswith("--for=") or a.startswith("--timeout="):
                opts[a[2:].split("=")[0]] = a.split("=", 1)[1]
                opts["flags"][a[2:].split("=")[0]] = a.split("=", 1)[1]
            elif a in ("-f", "--filename"):
                opts["files"].append(argv[i])
                i += 1
            elif a.startswith("--filename="):
                opts["files"].append(a.split("=", 1)[1])
            elif a.startswith("--") and "=" in a:
                key, _, val = a[2:].partition("=")
                if val.lower() == "false":  # --force=false is the flag unset
                    continue
                opts["flags"][key] = val
                opts["flags"]["--" + key] = True
            elif a.startswith("-"):
                opts["flags"][a] = True  # --ignore-daemonsets, --delete-emptydir-data, --force, ...
            else:
                args.append(a)
    if args[:1] == ["completion"]:
        return kubectl_completion(args[1:])
    if not args:
        print("kubectl controls the Kubernetes cluster manager (k3s simulator subset: get, cordon, uncordon, drain, delete, wait, version, cluster-info)")
        return 0
    verb, rest = args[0], args[1:]
    if verb == "version" and opts["output"] != "json" and "--client" in argv:
        print("Client Version: %s" % VERSION)
        return 0
    client = kube_client(opts["kubeconfig"])
    if verb == "version":
        v = kube_request(client, "GET", "/version")
        print("Client Version: %s\nKustomize Version: v5.4.2\nServer Version: %s" % (VERSION, v["gitVersion"]))
        return 0
    if verb == "cluster-info":
        print("Kubernetes control plane is running at https://%s:%d" % (client[0], client[1]))
        return 0
    if verb == "logs":
        if len(rest) != 1:
            raise KubectlError("error: expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'.")
        return kubectl_logs(client, rest[0], opts["namespace"] or "default", opts["flags"])
    if verb in ("apply", "create") and opts["files"]:
        return kubectl_apply(client, verb, opts["files"], opts["namespace"])
    if verb == "drain":
        if len(rest) != 1:
            raise KubectlError("error: USAGE: drain NODE [options] (the simulator drains one node per call)")
        return kubectl_drain(client, rest[0], opts["flags"])
    if verb in ("cordon", "uncordon"):
        for name in rest:
            node = kube_request(client, "GET", resource_path("nodes", None, name))
            if bool(node["spec"].get("unschedulable")) == (verb == "cordon"):
                print("node/%s already %s" % (name, verb + "ed"))
                continue
            kube_request(client, "PATCH", resource_path("nodes", None, name), {"spec": {"unschedulable": True if verb != "uncordon" else None}},
                         "application/strategic-merge-patch+json")
            print("node/%s %s" % (name, "uncordoned" if verb == "uncordon" else "cordoned"))
        return 0
    if not rest:
        raise KubectlError("error: You must specify the type of resource to %s" % verb)
    names = []
    if "/" in rest[0]:
        resource = RESOURCE_ALIASES.get(rest[0].split("/")[0])
        names = [r.split("/", 1)[1] for r in rest]
    else:
        resource, names = RESOURCE_ALIASES.get(rest[0]), rest[1:]
    if resource is None:
        raise KubectlError('error: the server doesn\'t have a resource type "%s"' % rest[0].split("/")[0])
    ns = None if opts["all"] else (opts["namespace"] or "default")
    if verb == "get":
        query = "?labelSelector=" + urllib.parse.quote(opts["selector"]) if opts["selector"] else ""
        if names:
            items = [kube_request(client, "GET", resource_path(resource, ns, n)) for n in names]
        else:
            items = kube_request(client, "GET", resource_path(resource, ns) + query)["items"]
        out = opts["output"]
        single = len(names) == 1
        if out == "json":
            print(json.dumps(items[0] if single else {"apiVersion": "v1", "items": items, "kind": "List",
                                                      "metadata": {"resourceVersion": ""}}, indent=4))
        elif out == "yaml":
            sys.stdout.write(yaml_dump(items[0] if single else {"apiVersion": "v1", "items": items, "kind": "List",
                                                                "metadata": {"resourceVersion": ""}}))
        elif out == "name":
            kind = {"helmcharts": "helmchart.helm.cattle.io", "jobs": "job.batch"}.get(resource) or \
                (WORKLOADS[resource][1].lower() + WORKLOADS[resource][2] if resource in WORKLOADS else resource.rstrip("s"))
            for o in items:
                print("%s/%s" % (kind, o["metadata"]["name"]))
        elif out.startswith("jsonpath="):
            sys.stdout.write(jsonpath(items[0] if single else {"apiVersion": "v1", "items": items, "kind": "List"}, out.split("=", 1)[1].strip("'")))
        elif out in ("", "wide"):
            print_table(resource, items, out == "wide", opts["all"], ns)
        else:
            raise KubectlError("error: unable to match a printer suitable for the output format \"%s\" (simulator)" % out)
        return 0
    if verb == "delete":
        for n in names:
            try:
                kube_request(client, "DELETE", resource_path(resource, ns, n))
            except KubectlError as e:
                if "--ignore-not-found" in argv and "(NotFound)" in str(e):
                    continue
                raise
            print('%s "%s" deleted' % ({"nodes": "node", "helmcharts": "helmchart.helm.cattle.io"}.get(resource) or
                                       (WORKLOADS[resource][1].lower() + WORKLOADS[resource][2] if resource in WORKLOADS else resource), n))
        return 0
    if verb == "wait":
        cond = opts.get("for", "")
        m = re.fullmatch(r"condition=(\w+)(?:=(\w+))?", cond)
        if not m:
            raise KubectlError("error: --for must be condition=NAME (simulator)")
        want = (m.group(2) or "True").lower()
        m2 = re.fullmatch(r"(\d+)(s|m)?", opts.get("timeout", "30s"))
        deadline = time.time() + (int(m2.group(1)) * (60 if m2 and m2.group(2) == "m" else 1) if m2 else 30)
        while True:
            items = [kube_request(client, "GET", resource_path(resource, ns, n)) for n in names] if names else \
                kube_request(client, "GET", resource_path(resource, ns))["items"]
            pending = [o for o in items if not any(c["type"].lower() == m.group(1).lower() and c["status"].lower() == want
                                                   for c in o.get("status", {}).get("conditions", []))]
            if not pending:
                for o in items:
                    print("%s/%s condition met" % (resource.rstrip("s"), o["metadata"]["name"]))
                return 0
            if time.time() >= deadline:
                raise KubectlError("error: timed out waiting for the condition on %s/%s" % (resource, pending[0]["metadata"]["name"]))
            time.sleep(1)
    raise KubectlError('error: unknown command "%s" for "kubectl" (simulator subset)' % verb)


# ----------------------------------------------------------------------------------------------
# etcd snapshots (`k3s etcd-snapshot ...`, `--cluster-reset-restore-path`), like k3s's
# pkg/etcd/snapshot.go and pkg/cli/etcdsnapshot: the CLI asks the running server (POST
# /db/snapshot with the server token); the server writes <name>-<node>-<unix time> files.
# ----------------------------------------------------------------------------------------------

SNAPSHOT_MAGIC = "K3S-SIM-ETCD-SNAPSHOT v1"


def snapshot_bytes(state):
    """The whole datastore, then a sha256 trailer (etcd's snapshot db carries one too)."""
    body = (SNAPSHOT_MAGIC + "\n" + json.dumps(state, sort_keys=True) + "\n").encode()
    return body + hashlib.sha256(body).hexdigest().encode() + b"\n"


def snapshot_state(path):
    """A snapshot file's datastore; the reason when it is missing, damaged or not a snapshot."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError("invalid snapshot path: stat %s: %s" % (path, os.strerror(e.errno).lower()))
    body, _, trailer = data.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    if not body.startswith(SNAPSHOT_MAGIC.encode()):
        raise ValueError("failed to restore snapshot %s: snapshot file integrity check failed: not an etcd snapshot" % path)
    if hashlib.sha256(body).hexdigest().encode() != trailer:
        raise ValueError("failed to restore snapshot %s: snapshot file integrity check failed: sha256 mismatch" % path)
    return json.loads(body.decode().split("\n", 1)[1])


def snapshot_dir(server_dir, requested):
    """k3s: the default dir is created (0700); a dir the user names must already exist."""
    default = os.path.join(server_dir, "db", "snapshots")
    d = requested or default
    if not os.path.isdir(d):
        if d != default:
            raise ValueError("failed to get etcd-snapshot-dir: stat %s: no such file or directory" % d)
        os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def local_snapshots(d):
    """(name, path, size, created unix) of every file in the snapshot dir, oldest first."""
    out = []
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        if not os.path.isfile(p):
            continue
        try:
            ts = int(f.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            ts = int(os.stat(p).st_mtime)
        out.append({"name": f, "location": "file://" + p, "size": os.stat(p).st_size, "createdAt": ts})
    return sorted(out, key=lambda s: (s["createdAt"], s["name"]))


def snapshot_request(app, req):
    """The server side of /db/snapshot: save, list, delete, prune."""
    op = req.get("operation")
    d = snapshot_dir(app.server_dir, req.get("dir"))
    if op == "list":
        return {"snapshots": local_snapshots(d)}
    if op == "save":
        if app.store:
            with app.store.lock:
                state = json.loads(json.dumps(app.store.state))
        else:
            status, state = app.upstream_server.json("GET", "/v1-k3s/sim/datastore")
            if status != 200:
                raise ValueError("failed to check etcd status for snapshot: %d" % status)
        now = int(round(time.time()))
        name = "%s-%s-%d" % (req.get("name") or "on-demand", app.node_name, now)
        path = os.path.join(d, name)
        log("info", "Saving etcd snapshot to %s" % path)
        write_file(path, snapshot_bytes(state), 0o600)
        return {"created": [name]}
    if op == "delete":
        deleted = []
        for name in req.get("names") or []:
            p = os.path.join(d, os.path.basename(name))
            if os.path.isfile(p):
                os.remove(p)
                log("info", "Removing local snapshot %s" % p)
                deleted.append(os.path.basename(name))
            else:
                log("warning", "Unable to find local snapshot %s to delete" % os.path.basename(name))
        return {"deleted": deleted}
    if op == "prune":
        keep = int(req.get("retention") or 5)
        prefix = (req.get("name") or "on-demand") + "-"
        log("info", "Applying snapshot retention=%d to local snapshots with prefix %s in %s" % (keep, prefix[:-1], d))
        mine = [s for s in local_snapshots(d) if s["name"].startswith(prefix)]
        deleted = []
        for s in mine[:max(0, len(mine) - keep)]:
            p = os.path.join(d, s["name"])
            log("info", "Removing local snapshot %s" % p)
            os.remove(p)
            deleted.append(s["name"])
        return {"deleted": deleted}
    raise ValueError("unknown snapshot operation %r" % op)


def etcd_snapshot(argv):
    """`k3s etcd-snapshot [save|ls|list|delete|prune] [flags]` (no subcommand = save)."""
    sub = "save"
    if argv and not argv[0].startswith("-"):
        sub, argv = argv[0], argv[1:]
    if sub == "ls":
        sub = "list"
    if sub not in ("save", "list", "delete", "prune"):
        sys.stderr.write('Incorrect Usage: command "%s" not found\n' % sub)
        return 1
    cfg, rest = load_config(argv)
    data_dir = cfg.get("data-dir") or "/var/lib/rancher/k3s"
    server_dir = os.path.join(data_dir, "server")
    if sub == "save" and rest:
        fatal("Error: this command does not take any arguments")
    if sub == "delete" and not rest:
        fatal("Error: no snapshots given for removal")
    token = (read_text(os.path.join(server_dir, "token")) or "").strip()
    if not token:
        fatal("Error: open %s: no such file or directory" % os.path.join(server_dir, "token"))
    req = {"operation": sub, "name": cfg.get("name") or cfg.get("etcd-snapshot-name"),
           "dir": cfg.get("dir") or cfg.get("etcd-snapshot-dir"), "names": rest,
           "retention": cfg.get("snapshot-retention") or cfg.get("etcd-snapshot-retention")}
    port = int(cfg.get("https-listen-port") or 6443)
    url = "https://127.0.0.1:%d" % port
    ca = os.path.join(server_dir, "tls", "server-ca.crt")
    client = Upstream(url, ca, secret=split_token(token)[1], user="server")
    try:
        status, body = client.json("POST", "/db/snapshot", req)
    except OSError as e:
        fatal("Error: Post \"%s/db/snapshot\": dial tcp 127.0.0.1:%d: %s" % (url, port, os_reason(e)))
    if status != 200:
        fatal("Error: see server log for details: %s" % (body or {}).get("message", status))
    if sub == "list":
        rows = [("Name", "Location", "Size", "Created")] + [
            (s["name"], s["location"], str(s["size"]), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s["createdAt"])))
            for s in body["snapshots"]]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print(" ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        return 0
    for name in body.get("created", []):
        log("info", "Snapshot %s saved." % name)
    for name in body.get("deleted", []):
        log("info", "Snapshot %s deleted." % name)
    return 0


def restore_snapshot(cfg, server_dir, secret, tls):
    """--cluster-reset --cluster-reset-restore-path=FILE: the datastore becomes the snapshot's
    (the old one moved to db/etcd-old-<unix time>, as k3s does); the bootstrap data it carries
    is decrypted with this server's token and its CA written to disk (k3s's rebootstrap after a
    restore), so a rebuilt server gets the snapshot's CA back and old kubeconfigs work. Another
    token's bootstrap data is left sealed: the start then fails on it as k3s does."""
    path = cfg.get("cluster-reset-restore-path")
    if not cfg.get("cluster-reset"):
        fatal("Error: invalid flag use; --cluster-reset required with --cluster-reset-restore-path")
    try:
        state = snapshot_state(path)
    except ValueError as e:
        fatal("Error: starting kubernetes: preparing server: start managed database: %s" % e)
    db = os.path.join(server_dir, "db")
    os.makedirs(db, exist_ok=True)
    current = os.path.join(db, "sim-state.json")
    if os.path.exists(current):
        old = os.path.join(db, "etcd-old-%d" % int(time.time()))
        os.makedirs(old, exist_ok=True)
        os.rename(current, os.path.join(old, "sim-state.json"))
        log("info", "Pre-restore etcd database moved to %s" % old)
    write_file(current, json.dumps(state), 0o600)
    log("info", "Restoring etcd snapshot from %s" % path)
    files = bootstrap_open(state.get("bootstrapData") or {}, secret) if state.get("bootstrapData") else None
    if files and files.get("server-ca.crt") and files.get("server-ca.key"):
        write_file(os.path.join(tls, "server-ca.crt"), files["server-ca.crt"], 0o644)
        write_file(os.path.join(tls, "server-ca.key"), files["server-ca.key"], 0o600)
        clean_leaf_certs(tls)
        log("info", "Bootstrap data restored from the snapshot: cluster CA written to %s" % tls)


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------

def token_rotate(argv):
    """`k3s token rotate [--token OLD] --new-token NEW [--server URL]`, as current k3s: PUT
    /v1-k3s/token with the old token's credentials; the old one defaults to the server's file."""
    flags, _ = parse_flags(argv)
    print("\033[33mWARNING\033[0m: Recommended to keep a record of the old token. If restoring from a snapshot, "
          "you must use the token associated with that snapshot.")
    old = flags.get("token") or os.environ.get("K3S_TOKEN") or ""
    if not old:
        old = (read_text("/var/lib/rancher/k3s/server/token") or "").rstrip("\n")
        if not old:
            fatal("open /var/lib/rancher/k3s/server/token: no such file or directory")
    url = flags.get("server") or os.environ.get("K3S_URL") or "https://127.0.0.1:6443"
    new = flags.get("new-token") or ""
    if not new:
        fatal("Error: new token is required")
    try:
        ca = fetch_cacerts(url, old)
    except (OSError, JoinRefused) as e:
        fatal("Error: %s" % e)
    ca_path = "/run/k3s-sim-rotate-ca.crt"
    write_file(ca_path, ca, 0o644)
    client = Upstream(url, ca_path, secret=split_token(old)[1], user="server")
    status, body = client.json("PUT", "/v1-k3s/token", {"newToken": new})
    os.remove(ca_path)
    if status != 200:
        fatal("Error: %s/v1-k3s/token: %d %s" % (url, status, (body or {}).get("message", "")))
    time.sleep(1)
    print("Token rotated, restart k3s nodes with new token")
    return 0


def main():
    prog = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    if prog in ("kubectl", "crictl", "ctr"):
        argv = [prog] + argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("NAME:\n   k3s - Kubernetes, but small and simple (lab simulator)\n\nUSAGE:\n   k3s [global options] command [command options]\n\n"
              "COMMANDS:\n   server, agent, kubectl, crictl, ctr, token, etcd-snapshot, check-config")
        return 0
    cmd = argv[0]
    if cmd in ("--version", "-v", "version"):
        commit = hashlib.sha1(VERSION.encode()).hexdigest()[:8]
        go = RUNTIMES.get(minor_of(VERSION), ("", "go1.22.9"))[1]
        print("k3s version %s (%s)\ngo version %s" % (VERSION, commit, go))
        return 0
    try:
        if cmd == "server":
            cfg, _ = load_config(argv[1:])
            run_server(cfg)
        elif cmd == "agent":
            cfg, _ = load_config(argv[1:])
            run_agent(cfg)
        elif cmd == "kubectl":
            return kubectl(argv[1:])
        elif cmd == "crictl":
            if argv[1:2] in (["ps"], ["pods"], ["images"]):
                print("CONTAINER           IMAGE               CREATED             STATE               NAME                ATTEMPT             POD ID              POD")
                return 0
            print("crictl version v1.31.0-k3s2 (simulator)")
            return 0
        elif cmd == "ctr":
            print("ctr github.com/k3s-io/containerd %s (simulator)" % RUNTIMES.get(minor_of(VERSION), ("containerd://1.7.23-k3s2",))[0].split("//")[1])
            return 0
        elif cmd == "etcd-snapshot":
            return etcd_snapshot(argv[1:])
        elif cmd == "token" and argv[1:2] == ["rotate"]:
            return token_rotate(argv[2:])
        elif cmd == "token":
            path = "/var/lib/rancher/k3s/server/token"
            tok = (read_text(path) or "").strip()
            if not tok:
                fatal("token not found at %s (is this a server?)" % path)
            if argv[1:2] == ["list"]:
                print("TOKEN     TTL       EXPIRES   USAGES    DESCRIPTION   EXTRA GROUPS")
            return 0
        elif cmd == "check-config":
            print("Verifying binaries in /var/lib/rancher/k3s/data/current/bin:\n- sim: ok\n\nSTATUS: pass (simulator)")
            return 0
        else:
            sys.stderr.write('Incorrect Usage: command "%s" not found (k3s simulator)\n' % cmd)
            return 1
    except KubectlError as e:
        sys.stderr.write(str(e) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
