#!/usr/bin/env python3
"""k3s release mirror for the edgeops lab (see docs/K3S-SIM.md).

Serves, on one address only:
  /install.sh                                   the simulated installer
  /v1-release/channels                          channel list (JSON shaped like update.k3s.io)
  /v1-release/channels/<name>                   302 to /k3s-io/k3s/releases/tag/<version>
  /k3s-io/k3s/releases/tag/<version>            a small release page (what the redirect lands on)
  /k3s-io/k3s/releases/download/<version>/<asset>   k3s, k3s-arm64, k3s-armhf, sha256sum-*.txt,
                                                k3s-airgap-images-<arch>.tar.gz, k3s-images.txt
  /charts/<repo host and path>/index.yaml       a Helm chart repository index standing in for that
  /charts/<repo host and path>/<chart>-<v>.tgz  repository (CHART_REPOS), with small chart archives
Each k3s artifact knows the /charts/ URL of this mirror (SIM_BUILD["charts"]): the simulated helm
controller looks HelmChart repos up there, as a site's chart proxy would serve them.
Artifacts are (re)built into STATE_DIR from k3s.py when the sources change. Every request is
appended to STATE_DIR/requests.log. An asset listed in STATE_DIR/corrupt (lines VERSION/ASSET,
re-read on every request) or given with --corrupt is served with altered bytes, so its checksum
no longer matches.
Python 3.11 stdlib only.
"""

import argparse
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import socketserver
import sys
import tarfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
# Oldest first. Three minors so upgrades across a minor and within one can both be tested.
VERSIONS = ["v1.30.8+k3s1", "v1.31.3+k3s1", "v1.31.4+k3s1", "v1.32.0+k3s1"]
CHANNELS = {
    "stable": "v1.31.4+k3s1",
    "latest": "v1.32.0+k3s1",
    "testing": "v1.32.0+k3s1",
    "v1.30": "v1.30.8+k3s1",
    "v1.31": "v1.31.4+k3s1",
    "v1.32": "v1.32.0+k3s1",
}
# arch -> (binary asset name, checksum file name), as on the real GitHub releases.
ARCHES = {"amd64": ("k3s", "sha256sum-amd64.txt"), "arm64": ("k3s-arm64", "sha256sum-arm64.txt"),
          "arm": ("k3s-armhf", "sha256sum-arm.txt")}
MARKER = 'SIM_BUILD = {"version": "v0.0.0+k3s-sim", "arch": "", "charts": ""}'
# Helm repositories the lab has: repo URL -> chart -> versions (oldest first). charts.gitlab.io
# with the charts edgeops deploys; edgeops pins no version, so helm takes the newest.
CHART_REPOS = {
    "https://charts.gitlab.io": {
        "gitlab-agent": ["2.9.0", "2.10.0"],
        "gitlab-runner": ["0.70.0", "0.71.0"],
    },
}


def repo_dir(repo):
    """Where a repository's index lives under /charts/: its host and path."""
    u = urllib.parse.urlsplit(repo)
    return (u.netloc + u.path).strip("/")


def chart_archive(chart, version):
    """A small, valid chart .tgz (Chart.yaml only), deterministic bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = ("apiVersion: v2\nname: %s\nversion: %s\ndescription: k3s lab mirror stand-in\n"
                % (chart, version)).encode()
        info = tarfile.TarInfo("%s/Chart.yaml" % chart)
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_charts(state_dir):
    """index.yaml (the Helm repository index format) and the archives of every CHART_REPOS chart."""
    root = os.path.join(state_dir, "charts")
    shutil.rmtree(root, ignore_errors=True)
    for repo, charts in CHART_REPOS.items():
        rdir = os.path.join(root, repo_dir(repo))
        os.makedirs(rdir)
        lines = ["apiVersion: v1", "entries:"]
        for chart, versions in sorted(charts.items()):
            lines.append("  %s:" % chart)
            # Helm lists the newest version first.
            for version in reversed(versions):
                archive = "%s-%s.tgz" % (chart, version)
                body = chart_archive(chart, version)
                with open(os.path.join(rdir, archive), "wb") as f:
                    f.write(body)
                lines += ["  - apiVersion: v2", "    name: %s" % chart, "    version: %s" % version,
                          "    digest: %s" % hashlib.sha256(body).hexdigest(),
                          "    created: \"2026-01-01T00:00:00Z\"", "    urls:", "    - %s" % archive]
        lines.append("generated: \"2026-01-01T00:00:00Z\"")
        with open(os.path.join(rdir, "index.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")


def sources_digest(charts_url):
    h = hashlib.sha256(charts_url.encode() + b"\0")
    for name in ("k3s.py", "install.sh", "mirror.py"):
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def image_list(version):
    """The images a k3s release pulls (k3s-images.txt), enough to make an air-gap bundle look right."""
    return "".join("docker.io/rancher/%s\n" % i for i in (
        "klipper-helm:v0.9.3-build20241008", "klipper-lb:v0.4.9", "local-path-provisioner:v0.0.30",
        "mirrored-coredns-coredns:1.12.0", "mirrored-library-busybox:1.36.1",
        "mirrored-library-traefik:2.11.10", "mirrored-metrics-server:v0.7.2", "mirrored-pause:3.6"))


def airgap_images(version, arch):
    """A small, valid tar.gz standing in for k3s-airgap-images-ARCH.tar.gz (deterministic bytes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = ("# k3s lab mirror: air-gap images of %s (%s)\n" % (version, arch) + image_list(version)).encode()
        info = tarfile.TarInfo("manifest.txt")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build(state_dir, charts_url):
    """Write the release tree unless it already matches the current sources and mirror address."""
    digest = sources_digest(charts_url)
    stamp = os.path.join(state_dir, "build.stamp")
    try:
        with open(stamp) as f:
            if f.read().strip() == digest:
                return
    except OSError:
        pass
    with open(os.path.join(HERE, "k3s.py")) as f:
        template = f.read()
    if MARKER not in template:
        sys.exit("mirror: k3s.py lacks the SIM_BUILD marker line")
    releases = os.path.join(state_dir, "k3s-io", "k3s", "releases", "download")
    shutil.rmtree(releases, ignore_errors=True)
    for version in VERSIONS:
        vdir = os.path.join(releases, version)
        os.makedirs(vdir)
        with open(os.path.join(vdir, "k3s-images.txt"), "w") as f:
            f.write(image_list(version))
        for arch, (asset, sumfile) in ARCHES.items():
            body = template.replace(MARKER, 'SIM_BUILD = {"version": %s, "arch": %s, "charts": %s}' % (
                json.dumps(version), json.dumps(arch), json.dumps(charts_url)))
            with open(os.path.join(vdir, asset), "w") as f:
                f.write(body)
            os.chmod(os.path.join(vdir, asset), 0o755)
            images = airgap_images(version, arch)
            image_asset = "k3s-airgap-images-%s.tar.gz" % arch
            with open(os.path.join(vdir, image_asset), "wb") as f:
                f.write(images)
            with open(os.path.join(vdir, sumfile), "w") as f:
                f.write("%s  %s\n" % (hashlib.sha256(images).hexdigest(), image_asset))
                f.write("%s  %s\n" % (hashlib.sha256(body.encode()).hexdigest(), asset))
    build_charts(state_dir)
    shutil.copyfile(os.path.join(HERE, "install.sh"), os.path.join(state_dir, "install.sh"))
    with open(stamp, "w") as f:
        f.write(digest + "\n")


class Mirror(http.server.BaseHTTPRequestHandler):
    server_version = "k3s-sim-mirror"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def log_request_line(self, status, size):
        line = "%s %s %s %s %d %d\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                       self.client_address[0], self.command, self.path, status, size)
        with self.server.log_lock, open(os.path.join(self.server.state_dir, "requests.log"), "a") as f:
            f.write(line)

    def reply(self, status, body=b"", ctype="text/plain", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log_request_line(status, len(body))

    def base_url(self):
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return "http://" + host

    def corrupted(self, version, asset):
        wanted = set(self.server.corrupt)
        try:
            with open(os.path.join(self.server.state_dir, "corrupt")) as f:
                wanted |= {line.strip() for line in f if line.strip()}
        except OSError:
            pass
        return "%s/%s" % (version, asset) in wanted

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        # unquote, not unquote_plus: a literal '+' in a version stays a '+' (k3s versions have one).
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        state = self.server.state_dir
        if parts in ([], ["install.sh"]):
            with open(os.path.join(state, "install.sh"), "rb") as f:
                return self.reply(200, f.read(), "text/x-shellscript")
        if parts == ["v1-release", "channels"]:
            base = self.base_url() + "/v1-release/channels"
            data = [{"id": name, "type": "channel", "links": {"self": base + "/" + name}, "name": name,
                     "latest": version} for name, version in CHANNELS.items()]
            body = {"type": "collection", "links": {"self": base}, "actions": {}, "resourceType": "channels", "data": data}
            return self.reply(200, json.dumps(body), "application/json")
        if len(parts) == 3 and parts[:2] == ["v1-release", "channels"]:
            version = CHANNELS.get(parts[2])
            if version is None:
                return self.reply(404, '{"type":"error","status":"404","message":"channel not found"}', "application/json")
            location = "%s/k3s-io/k3s/releases/tag/%s" % (self.base_url(), version)
            return self.reply(302, "Found", headers={"Location": location})
        if len(parts) == 5 and parts[:4] == ["k3s-io", "k3s", "releases", "tag"] and parts[4] in VERSIONS:
            return self.reply(200, "<html><body>Release %s (k3s lab mirror)</body></html>" % parts[4], "text/html")
        if len(parts) == 6 and parts[:4] == ["k3s-io", "k3s", "releases", "download"]:
            version, asset = parts[4], parts[5]
            full = os.path.join(state, "k3s-io", "k3s", "releases", "download", version, asset)
            if version in VERSIONS and "/" not in asset and os.path.isfile(full):
                with open(full, "rb") as f:
                    body = f.read()
                if self.corrupted(version, asset):
                    body = body + b"\n# corrupted by the k3s lab mirror\n"
                return self.reply(200, body, "application/octet-stream")
        if len(parts) >= 3 and parts[0] == "charts" and ".." not in parts:
            full = os.path.join(state, *parts)
            if os.path.isfile(full):
                with open(full, "rb") as f:
                    body = f.read()
                ctype = "application/x-yaml" if parts[-1] == "index.yaml" else "application/gzip"
                return self.reply(200, body, ctype)
        return self.reply(404, "Not Found")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="IP:PORT to bind (only that address)")
    ap.add_argument("--state-dir", required=True, help="artifact tree, request log, corrupt list")
    ap.add_argument("--corrupt", action="append", default=[], metavar="VERSION/ASSET",
                    help="serve this asset with altered bytes (repeatable)")
    ap.add_argument("--build-only", action="store_true", help="build the artifact tree and exit")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        ap.error("--listen must be IP:PORT")
    os.makedirs(args.state_dir, exist_ok=True)
    if args.build_only:
        build(args.state_dir, "http://%s/charts/" % args.listen)
        return
    srv = Server((host.strip("[]"), int(port)), Mirror)
    # Built after binding: with port 0 only the bound socket knows the address the artifacts name.
    build(args.state_dir, "http://%s:%d/charts/" % srv.server_address[:2])
    srv.state_dir, srv.corrupt, srv.log_lock = args.state_dir, args.corrupt, threading.Lock()
    print("k3s mirror listening on http://%s:%d/" % srv.server_address[:2], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
