"""A round-robin reverse proxy for several deputy instances: Debian's nginx
(nginx-light), run in the foreground in a directory of its own
(`nginx -c CONF -p DIR`, `daemon off;`), never as a system service.

Every request goes to exactly one instance (no retry on another one), in
turn (`upstream` round robin with one worker process, so one client's
consecutive requests alternate, also on one keep-alive connection). Each
answer names the instance that served it in `X-Upstream`, and the access
log has one line per request: `METHOD PATH STATUS UPSTREAM`."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent


def nginx_binary() -> str:
    """nginx's path, installing nginx-light with apt-get when it is missing."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found:
        return found
    r = subprocess.run(["bash", str(HERE / "install_nginx.sh")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"install_nginx.sh failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return shutil.which("nginx") or "/usr/sbin/nginx"


CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format upstream '$request_method $uri $status $upstream_addr';
    access_log {dir}/access.log upstream;
    client_body_temp_path {dir}/tmp/client_body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    upstream deputies {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        # Answered by nginx itself, never an instance: see Nginx.log_mark.
        location /__mark/ {{
            return 204;
        }}
        location / {{
            proxy_pass http://deputies;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_next_upstream off;
            proxy_buffering off;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


class Nginx:
    """nginx in front of `upstream_ports` (127.0.0.1), listening on `port`."""

    def __init__(self, root: Path, port: int, upstream_ports: list[int]):
        self.dir = Path(root)
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.upstreams = [f"127.0.0.1:{p}" for p in upstream_ports]
        servers = "\n".join(f"        server {u} max_fails=0;" for u in self.upstreams)
        # As root, the workers would run as nobody, who cannot enter pytest's
        # private temp directories: keep them as the invoking user.
        user = "user root root;" if os.geteuid() == 0 else ""
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(CONF.format(dir=self.dir, port=port, servers=servers, user=user))
        self.access_log = self.dir / "access.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "Nginx":
        binary = nginx_binary()
        log = open(self.dir / "stderr.log", "ab")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf), "-p", str(self.dir), "-e",
                                      str(self.dir / "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.errors()}")
            try:
                if requests.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not answer within {timeout}s: {self.errors()}")
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def errors(self) -> str:
        out = ""
        for name in ("stderr.log", "error.log"):
            p = self.dir / name
            if p.exists():
                out += p.read_text(errors="replace")[-3000:]
        return out

    def log_mark(self) -> int:
        """A position in the access log after every request answered so far;
        see `served_since`.

        nginx writes a request's line only after the client may already hold
        the answer, so the log's size alone can miss the last request (a
        flake seen in CI). Instead this sends a request nginx answers itself
        (no instance, so the round robin does not move) and waits for its
        line: the one worker handles events in order, so every request
        answered before it has been logged by then."""
        self._marks = getattr(self, "_marks", 0) + 1
        path = f"/__mark/{self._marks}"
        r = requests.get(self.url + path, timeout=5)
        assert r.status_code == 204, r.status_code
        deadline = time.monotonic() + 5
        while True:
            if self.access_log.exists():
                data = self.access_log.read_bytes()
                at = data.find(f" {path} ".encode())
                if at >= 0:
                    end = data.find(b"\n", at)
                    return len(data) if end < 0 else end + 1
            if time.monotonic() > deadline:
                raise AssertionError(f"nginx did not log {path} within 5 s")
            time.sleep(0.01)

    def served_since(self, mark: int, at_least: int = 0, skip=("/healthz",)) -> list[tuple[str, str, int, str]]:
        """(method, path, status, upstream) of every request logged after
        `mark`, in order, leaving out the paths in `skip`. nginx writes a
        line just after it answered, so this waits (up to 5 s) until there
        are `at_least` lines."""
        deadline = time.monotonic() + 5
        while True:
            with open(self.access_log, "rb") as f:
                f.seek(mark)
                lines = f.read().decode().splitlines()
            out = []
            for line in lines:
                method, path, status, upstream = line.split(" ", 3)
                if path not in skip and not path.startswith("/__mark/"):
                    out.append((method, path, int(status), upstream))
            if len(out) >= at_least or time.monotonic() > deadline:
                return out
            time.sleep(0.02)
