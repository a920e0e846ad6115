#!/usr/bin/env python3
"""deputy load benchmark driver. Run it through bench/run.sh, which builds
deputy, installs wrk and this script's Python packages, and measures the
ES256 rates first.

Everything generated (database, keys, request bodies, logs) lives in a fresh
temporary directory; only 127.0.0.1 is ever contacted, and every load run is
bounded by wrk's own duration.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "lua" / "replay.lua"

ALL_SCENARIOS = ["jwks", "cc_basic", "introspect", "cc_jwt", "cc_jwt_dpop", "exchange", "code", "refresh"]

# Targets from issue 8 (SQLite, same machine): minimum req/s and maximum p99 (ms).
TARGETS = {
    "cc_jwt": (5500, 10.0),
    "cc_basic": (8000, None),
    "introspect": (15000, 5.0),
    "exchange": (4000, None),
    "refresh": (3000, None),
}
# Targets from issue 13 (PostgreSQL behind the proxy, 1 and 2 instances,
# PostgreSQL, nginx, wrk and deputy on the same cores): minimum req/s.
PG_TARGETS = {
    "cc_jwt": (3000, None),
    "introspect": (8000, None),
    "exchange": (2500, None),
    "refresh": (1500, None),
}
RSS_TARGET_MB = 100
READY_TARGET_MS = 200

# Expected rates, used only to size the pre-generated unique requests
# (rate x duration x margin); a run that exhausts them says so.
EXPECTED_RATE = {"cc_jwt": 9000, "cc_jwt_dpop": 7000, "code": 3500, "refresh": 3500, "exchange": 6000}
EXPECTED_RATE_PG = {"cc_jwt": 6000, "cc_jwt_dpop": 5000, "code": 2500, "refresh": 2500, "exchange": 4500}
# Issue 16: cc_jwt with a DPoP proof at least this share of cc_jwt's rate.
DPOP_TARGET_RATIO = 0.70
MARGIN = 1.5

RAISED_LIMITS = {"DEPUTY_RATE_LIMIT_CLIENT": "1000000", "DEPUTY_RATE_LIMIT_ADDRESS": "1000000"}

WEB_REDIRECT = "http://127.0.0.1/cb"
CODE_TTL = 60  # deputy's default `code_ttl`: harvested codes must be redeemed within it
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------- HTTP


class Browser:
    """A minimal cookie-keeping HTTP/1.1 client for the person flow."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method, path, body=None, headers=None, cookies=True):
        h = dict(headers or {})
        if cookies and self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None and isinstance(body, dict):
            body = urllib.parse.urlencode(body)
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise
        if cookies:
            for k, v in resp.getheaders():
                if k.lower() == "set-cookie":
                    name, _, rest = v.partition("=")
                    value = rest.split(";", 1)[0]
                    if "max-age=0" in v.lower() or not value:
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = value
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data.decode("utf-8", "replace")

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


def basic(client_id: str, secret: str) -> str:
    q = urllib.parse.quote_plus
    return "Basic " + base64.b64encode(f"{q(client_id)}:{q(secret)}".encode()).decode()


def hidden(page: str, name: str) -> str:
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), page)
    if not m:
        raise RuntimeError(f"no hidden input {name!r} in page: {page[:300]!r}")
    return m.group(1)


def authorize_query(client_id: str, scope: str, challenge: str) -> str:
    return "/authorize?" + urllib.parse.urlencode(
        {
            "client_id": client_id,
            "response_type": "code",
            "scope": scope,
            "redirect_uri": WEB_REDIRECT,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )


def code_from_location(loc: str) -> str:
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    if "code" not in q:
        raise RuntimeError(f"no code in redirect {loc!r}")
    return q["code"][0]


def person_code(b: Browser, query: str, username: str, password: str) -> str:
    """Drive /authorize -> /login -> /consent until the 303 with a code."""
    status, headers, body = b.request("GET", query)
    for _ in range(4):
        if status == 303:
            return code_from_location(headers["location"])
        if status != 200:
            raise RuntimeError(f"authorize flow: HTTP {status}: {body[:300]}")
        if 'name="password"' in body:
            status, headers, body = b.request(
                "POST",
                "/login",
                {
                    "interaction": hidden(body, "interaction"),
                    "csrf": hidden(body, "csrf"),
                    "username": username,
                    "password": password,
                },
            )
        elif 'action="/consent"' in body:
            status, headers, body = b.request(
                "POST",
                "/consent",
                {"interaction": hidden(body, "interaction"), "csrf": hidden(body, "csrf"), "decision": "allow"},
            )
        else:
            raise RuntimeError(f"unexpected page: {body[:300]!r}")
    raise RuntimeError("authorize flow did not finish")


# ---------------------------------------------------------------- assertions


def _dpop_chunk(args):
    """DPoP proofs (RFC 9449 §4.2), one per request: ES256 with one key, a
    fresh jti each, iat 30 s ahead so every proof is still within deputy's
    ±60 s window for 90 s after signing."""
    pem, htu, start, count, prefix = args
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = serialization.load_pem_private_key(pem, password=None)
    nums = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big"))}
    header = b64u(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}, separators=(",", ":")).encode())
    iat = int(time.time()) + 30
    algo = ec.ECDSA(hashes.SHA256())
    out = []
    for i in range(start, start + count):
        payload = {"jti": f"{prefix}-p{i}", "htm": "POST", "htu": htu, "iat": iat}
        signing_input = header + "." + b64u(json.dumps(payload, separators=(",", ":")).encode())
        r, s = decode_dss_signature(key.sign(signing_input.encode(), algo))
        out.append(signing_input + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big")))
    return out


def _sign_chunk(args):
    pem, kid, client_id, aud, start, count, prefix = args
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = serialization.load_pem_private_key(pem, password=None)
    algo = ec.ECDSA(hashes.SHA256())
    header = b64u(json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT"}, separators=(",", ":")).encode())
    now = int(time.time())
    out = []
    for i in range(start, start + count):
        payload = {
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "jti": f"{prefix}-{i}",
            "iat": now,
            "exp": now + 250,
        }
        signing_input = header + "." + b64u(json.dumps(payload, separators=(",", ":")).encode())
        r, s = decode_dss_signature(key.sign(signing_input.encode(), algo))
        sig = b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        out.append(
            "grant_type=client_credentials"
            "&client_assertion_type=" + urllib.parse.quote(JWT_BEARER, safe="")
            + "&client_assertion=" + signing_input + "." + sig
        )
    return out


# -------------------------------------------------------------------- bench


def proc_cpu_s(pid: int, children=False) -> float:
    """utime + stime of a process (and, with children, of its waited-for
    children: a postgres backend that exited is then still counted)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = text.rsplit(")", 1)[1].split()
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t / CLK_TCK


def child_pids(ppid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            text = (d / "stat").read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == ppid:
            out.append(int(d.name))
    return out


def ctxt_switches(pid: int, threads=False) -> int:
    """Voluntary + involuntary context switches of a process (of each of its
    living threads, with threads=True: /proc/PID/status counts one task)."""
    total = 0
    paths = list(Path(f"/proc/{pid}/task").glob("*/status")) if threads else [Path(f"/proc/{pid}/status")]
    for path in paths:
        try:
            for line in path.read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of a server and its worker processes (postgres, nginx):
    the parent with its reaped children, plus the living children."""
    if not pid:
        return 0.0
    return proc_cpu_s(pid, children=True) + sum(proc_cpu_s(c) for c in child_pids(pid))


class PostgresCluster:
    """The throw-away cluster bench/run.sh started (scripts/pg-cluster): its
    URL and directory. Each deployment gets a fresh database in it."""

    def __init__(self, url: str, directory: str | None):
        self.url = url
        self.dir = Path(directory) if directory else None
        self.psql_bin = shutil.which("psql") or "psql"

    def url_for(self, dbname: str) -> str:
        u = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, u.fragment))

    def psql(self, sql: str, db: str | None = None, sep: str = "|") -> str:
        url = self.url_for(db) if db else self.url
        p = subprocess.run([self.psql_bin, "-X", "-q", "-tA", "-F", sep, "-v", "ON_ERROR_STOP=1", "-d", url,
                            "-c", sql], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"psql {sql[:60]!r}: {p.stderr.strip()}")
        return p.stdout.strip()

    def postmaster_pid(self) -> int | None:
        if not self.dir:
            return None
        try:
            return int((self.dir / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def log_size(self) -> int | None:
        try:
            return (self.dir / "postgresql.log").stat().st_size if self.dir else None
        except OSError:
            return None

    def serialization_failures(self, since: int | None) -> int | None:
        """Serialization failures (and deadlocks) PostgreSQL logged after
        byte `since` of its log: each is a transaction deputy ran again."""
        if since is None or not self.dir:
            return None
        try:
            with open(self.dir / "postgresql.log", "rb") as f:
                f.seek(since)
                data = f.read()
        except OSError:
            return None
        return data.count(b"could not serialize access") + data.count(b"deadlock detected")

    def describe(self) -> str:
        rows = self.psql(
            "SELECT current_setting('server_version'), current_setting('fsync'), "
            "current_setting('synchronous_commit'), current_setting('wal_sync_method'), "
            "current_setting('shared_buffers'), current_setting('max_connections'), "
            "current_setting('commit_delay')"
        ).split("|")
        ver, fsync, sync, method, shared, maxconn, delay = rows
        return (f"PostgreSQL {ver}, a throw-away cluster from `scripts/pg-cluster` in a temp dir on this machine's "
                f"disk: default settings (fsync={fsync}, synchronous_commit={sync}, wal_sync_method={method}, "
                f"shared_buffers={shared}, max_connections={maxconn}, commit_delay={delay}); "
                "a fresh database for each table")


class Bench:
    """One deployment measured: SQLite (one instance, clients talk to it
    directly), or PostgreSQL with N instances behind nginx (or one instance
    directly)."""

    def __init__(self, args, kind: str = "sqlite", instances: int = 1, proxied: bool = False,
                 cluster: PostgresCluster | None = None):
        self.args = args
        self.kind = kind
        self.pg = kind == "postgres"
        self.n = instances
        self.proxied = proxied
        self.cluster = cluster
        self.bin = args.bin
        self.tmp = Path(tempfile.mkdtemp(prefix="deputy-bench-"))
        self.keys = self.tmp / "keys"
        if self.pg:
            self.dbname = f"bench_{instances}{'p' if proxied else 'd'}_{secrets.token_hex(4)}"
            self.db = cluster.url_for(self.dbname)
            self.kek = self.tmp / "kek"
            self.kek.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
            self.kek.chmod(0o600)
        else:
            self.db = self.tmp / "deputy.db"
        self.ports = [free_port() for _ in range(instances)]
        self.proxy_port = free_port() if proxied else None
        # The port every client (wrk, the person flow) talks to.
        self.port = self.proxy_port or self.ports[0]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.servers: list[subprocess.Popen | None] = [None] * instances
        self.server_logs = [self.tmp / ("deputy.log" if instances == 1 else f"deputy-{i + 1}.log")
                            for i in range(instances)]
        self.nginx: subprocess.Popen | None = None
        self.results: list[dict] = []
        self.peak_rss_kb = [0] * instances
        self.verifier = b64u(secrets.token_bytes(32))
        self.challenge = b64u(hashlib.sha256(self.verifier.encode()).digest())
        self.password = "bench-" + secrets.token_urlsafe(12)
        self.notes: list[str] = []
        self.perf_reports: dict[str, Path] = {}
        self.ready: list[float] = []
        self.wal_before_restart: list[float] = []
        self.first_start = 0.0
        self.idle_rss_kb = [0] * instances
        self.aborted: Exception | None = None
        self.statements = False  # pg_stat_statements, reset before each window
        log(f"{self.label()}: work dir {self.tmp}, issuer {self.issuer}"
            + (f", instances on ports {', '.join(map(str, self.ports))}" if self.proxied else ""))

    def label(self) -> str:
        if not self.pg:
            return "SQLite"
        inst = f"{self.n} instance{'s' if self.n > 1 else ''}"
        return f"PostgreSQL, {inst} " + ("behind nginx" if self.proxied else "(direct, no proxy)")

    def targets(self) -> dict:
        return PG_TARGETS if self.pg else TARGETS

    @property
    def server(self) -> subprocess.Popen | None:
        """The first instance (the only one on SQLite)."""
        return self.servers[0]

    # ---------------------------------------------------------- deputy CLI
    def db_args(self) -> list[str]:
        if self.pg:
            return ["--database", self.db]
        return ["--database", str(self.db), "--keys-dir", str(self.keys)]

    def base_env(self) -> dict:
        env = dict(os.environ)
        env.pop("DEPUTY_CONFIG", None)
        if self.pg:
            env["DEPUTY_KEY_ENCRYPTION_KEY_FILE"] = str(self.kek)
        return env

    def cli(self, *argv, stdin: str | None = None, check=True):
        cmd = [self.bin, *self.db_args(), *argv]
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=self.base_env())
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])}: {p.stderr.strip()}")
        return p

    def cli_json(self, *argv, stdin=None):
        return json.loads(self.cli(*argv, stdin=stdin).stdout)

    def register(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        log("registering clients, user, resource")
        key = ec.generate_private_key(ec.SECP256R1())
        nums = key.public_key().public_numbers()
        self.jwt_kid = "bench-" + secrets.token_hex(4)
        jwks = {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64u(nums.x.to_bytes(32, "big")),
                    "y": b64u(nums.y.to_bytes(32, "big")),
                    "kid": self.jwt_kid,
                    "use": "sig",
                    "alg": "ES256",
                }
            ]
        }
        jwks_file = self.tmp / "svc-jwt.jwks.json"
        jwks_file.write_text(json.dumps(jwks))
        self.jwt_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.cli_json(
            "client", "add", "--id", "svc-jwt", "--kind", "service", "--auth", "private_key_jwt",
            "--jwks-file", str(jwks_file), "--scope", "read", "--audience", "https://api.example",
        )
        self.basic_secret = self.cli_json(
            "client", "add", "--id", "svc-basic", "--kind", "service", "--auth", "client_secret_basic",
            "--scope", "read", "--audience", "https://api.example",
        )["client_secret"]
        self.cli_json("user", "add", "--username", "bob", "--password-stdin", stdin=self.password + "\n")
        self.cli_json(
            "client", "add", "--id", "web", "--kind", "app", "--auth", "none", "--redirect-uri", WEB_REDIRECT,
            "--grant", "authorization_code", "--grant", "refresh_token", "--scope", "notes:read",
        )
        self.cli_json("resource", "add", "--id", "https://notes.example", "--scope", "notes:read=Read your notes")
        # Token exchange (issue in progress): the agent and its delegation rule.
        self.exchange_ready = None
        p = self.cli(
            "client", "add", "--id", "agent", "--kind", "agent", "--auth", "client_secret_basic",
            "--grant", "token-exchange", "--grant", "authorization_code", "--redirect-uri", WEB_REDIRECT,
            "--scope", "notes:read", check=False,
        )
        if p.returncode != 0:
            self.exchange_ready = f"`client add --kind agent --grant token-exchange` failed: {p.stderr.strip()}"
            return
        self.agent_secret = json.loads(p.stdout)["client_secret"]
        p = self.cli(
            "delegation", "allow", "--actor", "agent", "--audience", "https://notes.example",
            "--scope", "notes:read", "--max-lifetime", "120", check=False,
        )
        if p.returncode != 0:
            self.exchange_ready = "no `deputy delegation` command in this build: " + (
                p.stderr.strip().splitlines() or ["?"]
            )[0]

    # -------------------------------------------------------------- server
    def server_env(self) -> dict:
        """DEPUTY_LOG_LEVEL=warn, and the per-client / per-address request rate
        limits raised far above what one machine can send, when this build has
        them: all load comes from one address and, per scenario, one client, so
        the defaults would answer 429 (the limiter itself still runs)."""
        env = dict(self.base_env(), DEPUTY_LOG_LEVEL="warn")
        if getattr(self, "raised_limits", None) is None:
            probe = dict(env, **RAISED_LIMITS)
            p = subprocess.run([self.bin, *self.db_args(), "migrate"], env=probe, capture_output=True, text=True)
            self.raised_limits = p.returncode == 0
            if self.raised_limits:
                self.notes.append(
                    "deputy ran with " + ", ".join(f"{k}={v}" for k, v in RAISED_LIMITS.items())
                    + " (defaults 10000 and 20000 per second): every request comes from one address and one "
                    "client per scenario, so the default limits would turn load above them into 429s; "
                    "the limiter still runs on every request"
                )
        if self.raised_limits:
            env.update(RAISED_LIMITS)
        return env

    def start_server(self, i: int = 0) -> float:
        """Start instance i; seconds from spawn to its first 200 on /healthz."""
        env = self.server_env()
        cmd = [
            self.bin, *self.db_args(), "serve",
            "--issuer", self.issuer, "--bind", f"127.0.0.1:{self.ports[i]}",
        ]
        if self.proxied:
            cmd += ["--trusted-proxies", "127.0.0.1"]
        logf = open(self.server_logs[i], "ab")
        t0 = time.perf_counter()
        self.servers[i] = subprocess.Popen(cmd, env=env, stdout=logf, stderr=logf)
        return self.wait_healthz(t0, i)

    def wait_healthz(self, t0: float, i: int = 0, timeout: float = 10.0, port: int | None = None) -> float:
        """Seconds from t0 to the first 200 on /healthz (polling every 0.5 ms)."""
        port = port or self.ports[i]
        req = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        while time.perf_counter() - t0 < timeout:
            if self.servers[i].poll() is not None:
                raise RuntimeError(f"deputy exited ({self.servers[i].returncode}): {self.log_tail(i)}")
            if port == self.proxy_port and self.nginx and self.nginx.poll() is not None:
                raise RuntimeError(f"nginx exited ({self.nginx.returncode}): {self.nginx_log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(req)
                    data = s.recv(64)
                    if data.startswith(b"HTTP/1.1 200"):
                        return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.0005)
        raise RuntimeError(f"{'nginx' if port == self.proxy_port else 'deputy'} did not become ready within 10 s")

    def start_all(self) -> float:
        """Every instance (the first one alone, it creates the signing key),
        then the proxy; the first instance's start time."""
        first = self.start_server(0)
        for i in range(1, self.n):
            self.start_server(i)
        if self.proxied:
            self.start_proxy()
        return first

    def stop_server(self, i: int | None = None):
        """Stop instance i, or every instance and the proxy."""
        if i is None:
            self.stop_proxy()
            for j in range(self.n):
                self.stop_server(j)
            return
        server = self.servers[i]
        if server and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        self.servers[i] = None

    # --------------------------------------------------------------- nginx
    def start_proxy(self):
        """nginx in the foreground (our child), everything it writes in the
        temp dir, round robin over the instances with keep-alive upstream
        connections, passing Host and X-Forwarded-For."""
        d = self.tmp / "nginx"
        d.mkdir(exist_ok=True)
        user = ""
        if os.geteuid() == 0:
            import grp
            import pwd

            try:
                pw = pwd.getpwnam("nobody")
                user = f"user nobody {grp.getgrgid(pw.pw_gid).gr_name};"
            except KeyError:
                user = "user root root;"
        servers = "\n".join(f"    server 127.0.0.1:{p};" for p in self.ports)
        temps = "\n".join(f"  {k}_temp_path {d / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = f"""# written by bench/bench.py for one benchmark run
{user}
worker_processes auto;
daemon off;
master_process on;
pid {d / 'nginx.pid'};
error_log {d / 'error.log'} warn;
events {{
  worker_connections 4096;
}}
http {{
  access_log off;
{temps}
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_body_buffer_size 64k;
  upstream deputy {{
{servers}
    keepalive 64;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{self.proxy_port};
    location / {{
      proxy_pass http://deputy;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_max_temp_file_size 0;
    }}
  }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        cmd = [self.args.nginx, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]
        logf = open(d / "stderr.log", "ab")
        self.nginx = subprocess.Popen(cmd, stdout=logf, stderr=logf)
        self.wait_healthz(time.perf_counter(), 0, port=self.proxy_port)
        log(f"nginx on 127.0.0.1:{self.proxy_port} (pid {self.nginx.pid}) → "
            + ", ".join(f"127.0.0.1:{p}" for p in self.ports))

    def stop_proxy(self):
        if self.nginx and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGTERM)
            try:
                self.nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        self.nginx = None

    def nginx_log_tail(self) -> str:
        try:
            return (self.tmp / "nginx" / "error.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def wal_mb(self) -> float:
        try:
            return (self.db.parent / (self.db.name + "-wal")).stat().st_size / 2**20
        except OSError:
            return 0.0

    def log_tail(self, i: int = 0) -> str:
        try:
            return self.server_logs[i].read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def status(self, i: int = 0) -> dict[str, int]:
        out = {}
        for line in Path(f"/proc/{self.servers[i].pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0])
        return out

    def reset_peak_rss(self) -> bool:
        """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
        ok = True
        for i in range(self.n):
            self.peak_rss_kb[i] = max(self.peak_rss_kb[i], self.status(i).get("VmHWM", 0))
            try:
                Path(f"/proc/{self.servers[i].pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    # ----------------------------------------------------------------- wrk
    def wrk(self, env: dict, duration: float, connections=None, capture_target=None, deadline=None,
            out_prefix: Path | None = None, perf_name: str | None = None) -> dict:
        conns = connections or self.args.connections
        threads = max(1, min(self.args.threads, conns))  # wrk needs connections >= threads
        e = dict(os.environ)
        e.update({k: str(v) for k, v in env.items()})
        e["BENCH_THREADS"] = str(threads)
        if out_prefix:
            e["BENCH_OUT"] = str(out_prefix)
        cmd = [
            "wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, math.ceil(duration))}s", "--timeout", "10s",
            "-s", str(LUA), self.issuer,
        ]
        perf = None
        if perf_name and self.args.perf:
            pdata = self.tmp / f"perf-{perf_name}.data"
            perf = subprocess.Popen(
                ["perf", "record", "-F", "499", "-g", "-o", str(pdata), "-p", ",".join(str(x.pid) for x in self.servers),
                 "--", "sleep", str(max(1, math.ceil(duration)))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        p = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if capture_target is not None:
            # Harvest: stop wrk (SIGINT: it still reports) once enough is captured,
            # the captures stopped growing for a second, or time is up.
            t0 = last_change = time.time()
            last = 0
            while p.poll() is None:
                time.sleep(0.1)
                got = sum(count_lines(f) for f in out_prefix.parent.glob(out_prefix.name + ".*"))
                now = time.time()
                if got != last:
                    last, last_change = got, now
                stalled = got > 0 and now - last_change > 1.0
                if got >= capture_target or stalled or (deadline and now - t0 > deadline):
                    p.send_signal(signal.SIGINT)
                    break
        out, _ = p.communicate(timeout=duration + 120)
        if perf:
            perf.wait(timeout=60)
            self.perf_reports[perf_name] = pdata
        (self.tmp / "wrk.log").open("a").write(f"$ {' '.join(cmd)}\n{json.dumps(env, default=str)[:500]}\n{out}\n")
        m = re.search(r"^BENCH_RESULT (\{.*\})$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk produced no result:\n{out[-2000:]}")
        return json.loads(m.group(1))

    def harvest(self, name: str, env: dict, target: int, deadline: float) -> list[str]:
        prefix = self.tmp / f"harvest-{name}"
        for f in self.tmp.glob(prefix.name + ".*"):
            f.unlink()
        env = dict(env, BENCH_CAPTURE_LINEBUF="1", BENCH_NOSTOP="1")
        r = self.wrk(env, duration=deadline + 5, capture_target=target, deadline=deadline, out_prefix=prefix)
        vals = []
        for f in sorted(self.tmp.glob(prefix.name + ".*")):
            vals.extend(x for x in f.read_text().splitlines() if x)
        if r["bad_status"] or r["bad_body"]:
            raise RuntimeError(f"harvest {name}: {r['bad_status']} bad statuses, {r['bad_body']} bad bodies: {r['statuses']}")
        return vals

    def write_lines(self, name: str, lines) -> Path:
        path = self.tmp / f"{name}.bodies"
        with open(path, "w") as f:
            for line in lines:
                f.write(line)
                f.write("\n")
        return path

    # ----------------------------------------------------------- scenarios
    def n_unique(self, scenario: str, duration: float) -> int:
        override = getattr(self.args, f"{scenario}_requests", None)
        if override:
            return override
        rates = EXPECTED_RATE_PG if self.pg else EXPECTED_RATE
        return max(2000, int(rates[scenario] * duration * MARGIN))

    def deputy_cpu_s(self) -> float:
        """CPU seconds of every instance."""
        total = 0.0
        for server in self.servers:
            text = Path(f"/proc/{server.pid}/stat").read_text()
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def thread_cpu_s(self) -> dict[str, float]:
        """CPU seconds per deputy thread, keyed by instance, thread name and id
        ("1:actix-rt|system#1234")."""
        out = {}
        for i, server in enumerate(self.servers):
            for task in Path(f"/proc/{server.pid}/task").iterdir():
                try:
                    text = (task / "stat").read_text()
                except OSError:
                    continue
                name = text[text.index("(") + 1 : text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                out[f"{i + 1}:{name}#{task.name}"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        return out

    def postgres_cpu_s(self) -> float:
        return tree_cpu_s(self.cluster.postmaster_pid()) if self.pg else 0.0

    def nginx_cpu_s(self) -> float:
        return tree_cpu_s(self.nginx.pid) if self.nginx else 0.0

    def switches(self) -> tuple[int, int]:
        """Context switches so far of deputy (every thread of every instance)
        and of the cluster's processes (threads or processes that ended are
        not counted: an approximation, good for a load window)."""
        dep = sum(ctxt_switches(s.pid, threads=True) for s in self.servers)
        pm = self.cluster.postmaster_pid() if self.pg else None
        pgs = sum(ctxt_switches(c) for c in child_pids(pm)) if pm else 0
        return dep, pgs

    def pg_counters(self) -> tuple[float, float] | None:
        """(next transaction id, WAL position in bytes): exact at once, unlike
        the statistics views, which backends flush up to 10 s late."""
        if not self.pg:
            return None
        try:
            out = self.cluster.psql(
                "SELECT pg_snapshot_xmax(pg_current_snapshot())::text, pg_current_wal_lsn() - '0/0'::pg_lsn",
                db=self.dbname,
            )
            xid, wal = out.split("|")
            return float(xid), float(wal)
        except (RuntimeError, ValueError) as e:
            log(f"cannot read PostgreSQL counters: {e}")
            return None

    def statements_reset(self):
        if self.statements:
            self.cluster.psql("SELECT pg_stat_statements_reset()", db=self.dbname)

    def statements_read(self, scenario: str, answered: int) -> dict | None:
        """Every statement deputy ran during the window (pg_stat_statements,
        utility statements such as BEGIN and COMMIT included): calls and server
        time per request. The whole list goes to pg-statements-NAME.txt."""
        if not self.statements:
            return None
        sep = "\x1f"
        out = self.cluster.psql(
            "SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_current_snapshot%' "
            "ORDER BY total_exec_time DESC",
            db=self.dbname, sep=sep,
        )
        rows = []
        for line in out.splitlines():
            calls, total, nrows, query = line.split(sep, 3)
            rows.append((int(calls), float(total), int(nrows), query))
        n = max(answered, 1)
        calls = sum(r[0] for r in rows)
        total_ms = sum(r[1] for r in rows)
        path = self.tmp / f"pg-statements-{scenario}.txt"
        with open(path, "w") as f:
            f.write(f"{scenario}: {n} answers, {calls} statements ({calls / n:.2f} per answer), "
                    f"{total_ms:.0f} ms in the server ({total_ms / n * 1000:.0f} µs per answer)\n")
            f.write("calls/answer  mean µs  share  rows/call  statement\n")
            for c, t, nr, q in rows:
                f.write(f"{c / n:12.2f} {t / max(c, 1) * 1000:8.0f} {t / max(total_ms, 1e-9) * 100:5.1f}% "
                        f"{nr / max(c, 1):9.2f}  {q}\n")
        log(f"{scenario}: pg_stat_statements: {calls / n:.2f} statements and {total_ms / n * 1000:.0f} µs of "
            f"server time per answer; see {path}")
        return {
            "per_request": calls / n,
            "us_per_request": total_ms / n * 1000,
            "top": [(q[:70], c / n, t / max(c, 1) * 1000) for c, t, nr, q in rows[:5]],
        }

    def measure(self, scenario: str, env: dict, duration: float, note: str = "") -> dict:
        self.ensure_alive()
        reset = self.reset_peak_rss()
        log(f"{scenario}: load for {duration:g} s at {self.args.connections} connections")
        self.statements_reset()
        pglog0 = self.cluster.log_size() if self.pg else None
        pg0 = self.pg_counters()
        threads0 = self.thread_cpu_s()
        busy0, dep0, kids0, wall0 = machine_busy_s(), self.deputy_cpu_s(), children_cpu_s(), time.time()
        pgc0, ngx0 = self.postgres_cpu_s(), self.nginx_cpu_s()
        sw0 = self.switches() if self.pg else None
        r = self.wrk(env, duration, perf_name=scenario)
        sw1 = self.switches() if self.pg else None
        busy1, dep1, kids1, wall1 = machine_busy_s(), self.deputy_cpu_s(), children_cpu_s(), time.time()
        pgc1, ngx1 = self.postgres_cpu_s(), self.nginx_cpu_s()
        threads1 = self.thread_cpu_s()
        pg1 = self.pg_counters()
        serial = self.cluster.serialization_failures(pglog0) if self.pg else None
        statements = self.statements_read(scenario, r["answered"])
        if statements:
            r["pg_statements"] = statements
        window = r["duration_us"] / 1e6
        per_instance: list[dict[str, float]] = [{} for _ in range(self.n)]
        for k, v in threads1.items():
            inst, _, rest = k.partition(":")
            name = rest.split("#")[0]
            d = per_instance[int(inst) - 1]
            d[name] = d.get(name, 0.0) + (v - threads0.get(k, 0.0))
        busiest = max(
            ((k.split("#")[0], v - threads0.get(k, 0.0)) for k, v in threads1.items()), key=lambda kv: kv[1]
        )
        r["instance_threads"] = [
            {k: round(v / window, 2) for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v > 0.01 * window}
            for d in per_instance
        ]
        r["threads"] = r["instance_threads"][0]
        r["busiest_thread"] = (busiest[0], round(busiest[1] / window, 2))
        rss_list = []
        for i in range(self.n):
            rss_i = self.status(i).get("VmHWM", 0)
            self.peak_rss_kb[i] = max(self.peak_rss_kb[i], rss_i)
            rss_list.append(rss_i)
        dep, wrk_cpu = dep1 - dep0, kids1 - kids0
        pgc, ngx = pgc1 - pgc0, ngx1 - ngx0
        other = max(0.0, (busy1 - busy0) - dep - wrk_cpu - pgc - ngx)
        r.update(
            scenario=scenario, duration_s=duration, rss_kb=max(rss_list), rss_list_kb=rss_list, rss_reset=reset,
            note=note, wal_mb=None if self.pg else self.wal_mb(),
            # CPU in cores: deputy over the load window, others over the wall time.
            deputy_cores=dep / window,
            wrk_cores=wrk_cpu / (wall1 - wall0),
            postgres_cores=pgc / (wall1 - wall0),
            nginx_cores=ngx / (wall1 - wall0),
            other_cores=other / (wall1 - wall0),
        )
        if pg0 and pg1:
            # Counted over the whole measurement (wrk's last answers, a
            # background checkpoint's full-page images included).
            answered = max(r["answered"], 1)
            r["pg"] = {
                # A transaction that writes takes an id, and so does each
                # savepoint that writes (a subtransaction).
                "xids_per_request": (pg1[0] - pg0[0]) / answered,
                "wal_bytes_per_request": (pg1[1] - pg0[1]) / answered,
                "wal_mb_per_s": (pg1[1] - pg0[1]) / 2**20 / (wall1 - wall0),
                "deputy_switches_per_request": (sw1[0] - sw0[0]) / answered,
                "postgres_switches_per_request": (sw1[1] - sw0[1]) / answered,
                "serialization_failures": serial,
            }
        self.results.append(r)
        extra = ""
        if self.pg:
            extra = f", postgres {r['postgres_cores']:.2f}, nginx {r['nginx_cores']:.2f}"
            if "pg" in r:
                extra += (f"; PostgreSQL per request: {r['pg']['xids_per_request']:.2f} transaction ids, "
                          f"{r['pg']['wal_bytes_per_request'] / 1024:.1f} kB WAL, context switches "
                          f"deputy {r['pg']['deputy_switches_per_request']:.1f} "
                          f"postgres {r['pg']['postgres_switches_per_request']:.1f}, "
                          f"serialization failures {r['pg']['serialization_failures']}")
        log(
            f"{scenario}: {r['rate']:.0f} req/s, p50 {r['p50_us']/1000:.2f} ms, p99 {r['p99_us']/1000:.2f} ms, "
            f"max {r['max_us']/1000:.2f} ms, non-2xx {r['bad_status']}, bad bodies {r['bad_body']}, "
            f"peak RSS {' + '.join(f'{x / 1024:.1f}' for x in rss_list)} MB, "
            + ("" if self.pg else f"WAL {r['wal_mb']:.0f} MB, ")
            + f"statuses {r['statuses']}; CPU cores: deputy {r['deputy_cores']:.2f}, "
            f"wrk {r['wrk_cores']:.2f}, other processes {r['other_cores']:.2f}{extra}; deputy threads (cores): "
            + "; ".join(str(t) for t in r["instance_threads"])
        )
        self.ensure_alive()
        return r

    def not_available(self, scenario: str, why: str):
        log(f"{scenario}: not available: {why}")
        self.results.append({"scenario": scenario, "unavailable": why})

    def ensure_alive(self):
        for i, server in enumerate(self.servers):
            if server.poll() is not None:
                which = f"deputy instance {i + 1}" if self.n > 1 else "deputy"
                raise RuntimeError(f"{which} died ({server.returncode}): {self.log_tail(i)}")
        if self.proxied and self.nginx.poll() is not None:
            raise RuntimeError(f"nginx died ({self.nginx.returncode}): {self.nginx_log_tail()}")

    def token_basic(self, client_id, secret, body) -> tuple[int, dict]:
        b = Browser(self.port)
        status, _, text = b.request(
            "POST", "/token", body, headers={"Authorization": basic(client_id, secret)}, cookies=False
        )
        try:
            return status, json.loads(text)
        except ValueError:
            return status, {"raw": text}

    def s_jwks(self, d):
        self.measure("jwks", {"BENCH_METHOD": "GET", "BENCH_PATH": "/jwks", "BENCH_EXPECT": '"keys"'}, d)

    def s_cc_basic(self, d):
        self.measure(
            "cc_basic",
            {
                "BENCH_METHOD": "POST",
                "BENCH_PATH": "/token",
                "BENCH_HEADERS": "Authorization: " + basic("svc-basic", self.basic_secret),
                "BENCH_BODY": "grant_type=client_credentials",
                "BENCH_EXPECT": '"access_token"',
            },
            d,
        )

    def s_introspect(self, d):
        status, tok = self.token_basic("svc-basic", self.basic_secret, {"grant_type": "client_credentials"})
        if status != 200:
            raise RuntimeError(f"introspect setup: token request HTTP {status}: {tok}")
        at = tok["access_token"]
        status, sample = self.token_basic_path("/introspect", {"token": at})
        if status != 200 or sample.get("active") is not True:
            raise RuntimeError(f"introspect setup: sample answer HTTP {status}: {sample}")
        note = ""
        if d > 250:
            note = "the access token expires after 300 s: later answers are inactive"
        self.measure(
            "introspect",
            {
                "BENCH_METHOD": "POST",
                "BENCH_PATH": "/introspect",
                "BENCH_HEADERS": "Authorization: " + basic("svc-basic", self.basic_secret),
                "BENCH_BODY": "token=" + at,
                "BENCH_EXPECT": '"active":true',
            },
            d,
            note,
        )

    def token_basic_path(self, path, body):
        b = Browser(self.port)
        status, _, text = b.request(
            "POST", path, body, headers={"Authorization": basic("svc-basic", self.basic_secret)}, cookies=False
        )
        return status, json.loads(text)

    def s_cc_jwt(self, d):
        n = self.n_unique("cc_jwt", d)
        log(f"cc_jwt: signing {n} client assertions (ES256, fresh jti, exp = now + 250)")
        t0 = time.time()
        prefix = secrets.token_hex(6)
        workers = max(1, os.cpu_count() or 1)
        chunk = math.ceil(n / (workers * 4))
        jobs = [
            (self.jwt_pem, self.jwt_kid, "svc-jwt", self.issuer + "/token", s, min(chunk, n - s), prefix)
            for s in range(0, n, chunk)
        ]
        with ProcessPoolExecutor(workers) as ex:
            bodies = [b for part in ex.map(_sign_chunk, jobs) for b in part]
        path = self.write_lines("cc_jwt", bodies)
        log(f"cc_jwt: {len(bodies)} assertions in {time.time() - t0:.1f} s")
        # One sample first (not from the file: its jti would be spent).
        extra = _sign_chunk((self.jwt_pem, self.jwt_kid, "svc-jwt", self.issuer + "/token", 0, 1, prefix + "x"))[0]
        b = Browser(self.port)
        status, _, text = b.request(
            "POST", "/token", extra, headers={"Content-Type": "application/x-www-form-urlencoded"}, cookies=False
        )
        if status != 200:
            raise RuntimeError(f"cc_jwt sample: HTTP {status}: {text}")
        self.measure(
            "cc_jwt",
            {
                "BENCH_METHOD": "POST",
                "BENCH_PATH": "/token",
                "BENCH_BODIES": path,
                "BENCH_EXPECT": '"access_token"',
            },
            d,
            f"{len(bodies)} pre-signed assertions",
        )

    def s_cc_jwt_dpop(self, d):
        """cc_jwt with a DPoP proof per request (issue 16): one more
        signature verification and one more single-use row per request."""
        n = self.n_unique("cc_jwt_dpop", d)
        log(f"cc_jwt_dpop: signing {n} client assertions and {n} DPoP proofs")
        t0 = time.time()
        prefix = secrets.token_hex(6)
        workers = max(1, os.cpu_count() or 1)
        chunk = math.ceil(n / (workers * 4))
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        dpop_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        htu = self.issuer + "/token"
        jobs = [
            (self.jwt_pem, self.jwt_kid, "svc-jwt", htu, s, min(chunk, n - s), prefix)
            for s in range(0, n, chunk)
        ]
        proof_jobs = [(dpop_pem, htu, s, min(chunk, n - s), prefix) for s in range(0, n, chunk)]
        with ProcessPoolExecutor(workers) as ex:
            bodies = [b for part in ex.map(_sign_chunk, jobs) for b in part]
            proofs = [p for part in ex.map(_dpop_chunk, proof_jobs) for p in part]
        path = self.write_lines("cc_jwt_dpop", [p + "\t" + b for p, b in zip(proofs, bodies)])
        log(f"cc_jwt_dpop: {len(bodies)} requests in {time.time() - t0:.1f} s")
        extra = _sign_chunk((self.jwt_pem, self.jwt_kid, "svc-jwt", htu, 0, 1, prefix + "x"))[0]
        proof = _dpop_chunk((dpop_pem, htu, 0, 1, prefix + "x"))[0]
        b = Browser(self.port)
        status, _, text = b.request(
            "POST", "/token", extra,
            headers={"Content-Type": "application/x-www-form-urlencoded", "DPoP": proof}, cookies=False,
        )
        if status != 200 or '"token_type":"DPoP"' not in text:
            raise RuntimeError(f"cc_jwt_dpop sample: HTTP {status}: {text}")
        self.measure(
            "cc_jwt_dpop",
            {
                "BENCH_METHOD": "POST",
                "BENCH_PATH": "/token",
                "BENCH_BODIES": path,
                "BENCH_LINE_HEADER": "DPoP",
                "BENCH_EXPECT": '"token_type":"DPoP"',
            },
            d,
            f"{len(bodies)} pre-signed assertions, each with its own DPoP proof",
        )

    def person_setup(self):
        """Sign bob in once and record consent for `web` (and `agent`)."""
        if getattr(self, "browser", None):
            return
        self.browser = Browser(self.port)
        self.web_query = authorize_query("web", "openid notes:read", self.challenge)
        code = person_code(self.browser, self.web_query, "bob", self.password)
        # Check the fast path now answers 303 at once.
        status, headers, _ = self.browser.request("GET", self.web_query)
        if status != 303:
            raise RuntimeError(f"fast authorize path answered {status}")
        log(f"person flow ready (session cookie set, consent for web recorded; first code {code[:6]}...)")

    def harvest_codes(self, n: int, deadline: float, query=None) -> list[str]:
        self.person_setup()
        t0 = time.time()
        codes = self.harvest(
            "codes",
            {
                "BENCH_METHOD": "GET",
                "BENCH_PATH": query or self.web_query,
                "BENCH_HEADERS": "Cookie: " + self.browser.cookie_header(),
                "BENCH_OK": "303",
                "BENCH_CAPTURE": "[?&]code=([^&]+)",
                "BENCH_CAPTURE_IN": "location",
                "BENCH_LIMIT": math.ceil(n / max(1, min(self.args.threads, self.args.connections))) + 1,
            },
            n,
            deadline,
        )
        codes = [urllib.parse.unquote(c) for c in codes][:n]
        dt = time.time() - t0
        log(f"harvested {len(codes)} codes via GET /authorize in {dt:.1f} s ({len(codes) / max(dt, 1e-9):.0f}/s)")
        return codes

    def code_body(self, code: str) -> str:
        return urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "client_id": "web",
                "code_verifier": self.verifier,
                "redirect_uri": WEB_REDIRECT,
            }
        )

    def s_code(self, d):
        n = self.n_unique("code", d)
        # Codes live CODE_TTL s: harvest for at most CODE_TTL - d - 5 s.
        budget = max(5.0, CODE_TTL - d - 5)
        codes = self.harvest_codes(n, budget)
        path = self.write_lines("code", (self.code_body(c) for c in codes))
        self.measure(
            "code",
            {"BENCH_METHOD": "POST", "BENCH_PATH": "/token", "BENCH_BODIES": path, "BENCH_EXPECT": '"refresh_token"'},
            d,
            f"{len(codes)} codes (openid: access + ID token + refresh token each)",
        )

    def s_refresh(self, d):
        n = self.n_unique("refresh", d)
        tokens: list[str] = []
        t0 = time.time()
        while len(tokens) < n * 0.99:
            # Chunks small enough that every code is redeemed within its 60 s
            # (PostgreSQL harvests and redeems at a third of SQLite's rate).
            want = min(n - len(tokens), 20000 if self.pg else 40000)
            codes = self.harvest_codes(want, 15 if self.pg else 25)
            path = self.write_lines("refresh-redeem", (self.code_body(c) for c in codes))
            got = self.harvest(
                "refresh",
                {
                    "BENCH_METHOD": "POST",
                    "BENCH_PATH": "/token",
                    "BENCH_BODIES": path,
                    "BENCH_CAPTURE": '"refresh_token":"([^"]+)"',
                },
                len(codes),
                CODE_TTL - 10,
            )
            tokens.extend(got)
            log(f"refresh: {len(tokens)}/{n} refresh tokens")
            if len(got) < len(codes) * 0.9:
                raise RuntimeError(f"refresh setup: only {len(got)} of {len(codes)} codes redeemed")
        dt = time.time() - t0
        log(f"refresh: {len(tokens)} refresh tokens (distinct families) in {dt:.1f} s")
        path = self.write_lines(
            "refresh",
            (f"grant_type=refresh_token&client_id=web&refresh_token={t}" for t in tokens),
        )
        self.measure(
            "refresh",
            {"BENCH_METHOD": "POST", "BENCH_PATH": "/token", "BENCH_BODIES": path, "BENCH_EXPECT": '"refresh_token"'},
            d,
            f"{len(tokens)} refresh tokens, each presented once (openid: access + ID token each)",
        )

    def s_exchange(self, d):
        if self.exchange_ready:
            return self.not_available("exchange", self.exchange_ready)
        self.person_setup()
        query = authorize_query("agent", "notes:read", self.challenge)
        subject_tokens = []
        for _ in range(8):
            code = person_code(self.browser, query, "bob", self.password)
            status, tok = self.token_basic(
                "agent",
                self.agent_secret,
                {"grant_type": "authorization_code", "code": code, "code_verifier": self.verifier,
                 "redirect_uri": WEB_REDIRECT},
            )
            if status != 200:
                return self.not_available("exchange", f"agent code redemption HTTP {status}: {tok}")
            subject_tokens.append(tok["access_token"])
        bodies = [
            "grant_type=" + urllib.parse.quote(TOKEN_EXCHANGE, safe="")
            + "&subject_token=" + t
            + "&subject_token_type=" + urllib.parse.quote(ACCESS_TOKEN_TYPE, safe="")
            + "&audience=" + urllib.parse.quote("https://notes.example", safe="")
            for t in subject_tokens
        ]
        b = Browser(self.port)
        status, _, text = b.request(
            "POST", "/token", bodies[0],
            headers={"Authorization": basic("agent", self.agent_secret),
                     "Content-Type": "application/x-www-form-urlencoded"},
            cookies=False,
        )
        if status != 200:
            if "unsupported_grant_type" in text:
                return self.not_available("exchange", "token exchange answers unsupported_grant_type in this build")
            return self.not_available("exchange", f"sample exchange HTTP {status}: {text[:200]}")
        n = self.n_unique("exchange", d)
        path = self.write_lines("exchange", (bodies[i % len(bodies)] for i in range(n)))
        self.measure(
            "exchange",
            {
                "BENCH_METHOD": "POST",
                "BENCH_PATH": "/token",
                "BENCH_HEADERS": "Authorization: " + basic("agent", self.agent_secret),
                "BENCH_BODIES": path,
                "BENCH_EXPECT": '"access_token"',
            },
            d,
            f"{len(subject_tokens)} subject tokens, each exchanged many times",
        )

    # ----------------------------------------------------------------- run
    def readiness(self, rounds=5) -> list[float]:
        """Spawn-to-first-200 on /healthz, restarting on the existing db and
        keys (with several instances: the first one, the others keep running)."""
        times = []
        self.wal_before_restart = []
        for _ in range(rounds):
            self.stop_server(0)
            if not self.pg:
                self.wal_before_restart.append(self.wal_mb())
            times.append(self.start_server(0))
        return times

    def any_dead(self) -> bool:
        return any(s is None or s.poll() is not None for s in self.servers) or (
            self.proxied and (self.nginx is None or self.nginx.poll() is not None)
        )

    def run(self):
        a = self.args
        if self.pg:
            self.cluster.psql(f"CREATE DATABASE {self.dbname}")
            log(f"{self.label()}: fresh database {self.dbname}")
            if a.pg_statements:
                try:
                    self.cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", db=self.dbname)
                    self.statements = True
                except RuntimeError as e:
                    log(f"pg_stat_statements not available (is it in shared_preload_libraries?): {e}")
        self.register()
        first = self.start_all()
        self.first_start = first
        log(f"deputy up (first start, key generated) in {first * 1000:.0f} ms, "
            f"pid {', '.join(str(s.pid) for s in self.servers)}")
        self.idle_rss_kb = [self.status(i).get("VmRSS", 0) for i in range(self.n)]
        durations = {}
        for s in a.scenario:
            durations[s] = a.duration
            if s in ("refresh", "code") and a.person_duration:
                durations[s] = a.person_duration
        for rnd in range(a.rounds):
            if a.rounds > 1:
                log(f"round {rnd + 1} of {a.rounds}")
            self.run_round(durations)
        for i in range(self.n):
            self.peak_rss_kb[i] = max(self.peak_rss_kb[i], self.status(i).get("VmHWM", 0))
        self.ready = self.readiness()
        log("ready after restart (ms): " + ", ".join(f"{t * 1000:.1f}" for t in self.ready))
        self.stop_server()
        if a.perf:
            self.perf_summaries()

    def run_round(self, durations: dict):
        """Each scenario once, in order (with --rounds, the scenarios alternate
        window by window, so a slow moment of the host hits them alike)."""
        for s in self.args.scenario:
            try:
                getattr(self, "s_" + s)(durations[s])
            except Exception as e:  # report, keep the other scenarios
                log(f"{s}: FAILED: {e}")
                self.results.append({"scenario": s, "failed": str(e)[:500]})
                if self.any_dead():
                    raise

    def cleanup(self):
        """Stop everything started; drop the deployment's database."""
        self.stop_server()
        if self.pg and not self.args.keep:
            try:
                self.cluster.psql(f"DROP DATABASE IF EXISTS {self.dbname}")
            except RuntimeError as e:
                log(f"could not drop database {self.dbname}: {e}")

    def perf_summaries(self):
        for name, data in self.perf_reports.items():
            out = self.tmp / f"perf-{name}.txt"
            with open(out, "w") as f:
                subprocess.run(
                    ["perf", "report", "-i", str(data), "--no-children", "--stdio", "--sort", "dso,sym",
                     "--percent-limit", "0.7", "-g", "none"],
                    stdout=f, stderr=subprocess.DEVNULL,
                )
            log(f"perf profile of {name}: {out}")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f[:8]) - idle) / CLK_TCK


def children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0


def ms(us) -> str:
    return f"{us / 1000:.2f}"


def verdict(r, targets=None) -> str:
    t = (TARGETS if targets is None else targets).get(r["scenario"])
    marks = []
    if t:
        rate, p99 = t
        ok = r["rate"] >= rate
        marks.append(f"≥{rate:,} req/s {'✓' if ok else '✗'}")
        if p99 is not None:
            ok = r["p99_us"] / 1000 < p99
            marks.append(f"p99<{p99:g} ms {'✓' if ok else '✗'}")
    if r["bad_status"]:
        marks.append("non-2xx ✗")
    return "; ".join(marks) or "–"


def per_request(cores: float, rate: float) -> str:
    return f"{cores / max(rate, 1e-9) * 1e6:.0f} µs"


def result_rows(bench: Bench) -> list[str]:
    """The Markdown table of one deployment (SQLite: the format of every
    earlier results.md; PostgreSQL: the CPU column also has postgres and nginx,
    and there is no WAL file to size)."""
    cpu_head = "CPU deputy/postgres/nginx/wrk/other" if bench.pg else "CPU deputy/wrk/other"
    lines = [
        f"| scenario | req/s | p50 ms | p99 ms | max ms | non-2xx | peak RSS MB | WAL MB | s | {cpu_head} | target | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in bench.results:
        if "unavailable" in r:
            lines.append(f"| {r['scenario']} | not available | | | | | | | | | | {r['unavailable']} |")
            continue
        if "failed" in r:
            lines.append(f"| {r['scenario']} | FAILED | | | | | | | | | | {r['failed'].splitlines()[0][:200]} |")
            continue
        notes = [r["note"]] if r.get("note") else []
        bad = {k: v for k, v in r.get("statuses", {}).items() if not k.startswith("2")}
        if bad:
            notes.append("non-2xx answers: " + ", ".join(f"{k} ×{v}" for k, v in sorted(bad.items())))
        if r["bad_body"]:
            notes.append(f"{r['bad_body']} 2xx answers without the expected content")
        errs = r["socket_errors"]
        if any(errs.values()):
            notes.append("socket errors " + ", ".join(f"{k} {v}" for k, v in errs.items() if v))
        if r["exhausted_threads"]:
            notes.append(
                f"pre-generated requests ran out after {r['exhausted_at_s']:.1f} s: req/s is over that time"
            )
        if not r.get("rss_reset"):
            notes.append("peak RSS is since start (could not reset VmHWM)")
        rss = " + ".join(f"{x / 1024:.1f}" for x in r.get("rss_list_kb", [r["rss_kb"]]))
        wal = "–" if r.get("wal_mb") is None else f"{r['wal_mb']:.0f}"
        if bench.pg:
            ngx = f"{r['nginx_cores']:.2f}" if bench.proxied else "–"
            cpu = (f"{r['deputy_cores']:.2f} / {r['postgres_cores']:.2f} / {ngx} / "
                   f"{r['wrk_cores']:.2f} / {r['other_cores']:.2f}")
        else:
            cpu = f"{r['deputy_cores']:.2f} / {r['wrk_cores']:.2f} / {r['other_cores']:.2f}"
        lines.append(
            f"| {r['scenario']} | {r['rate']:,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | {ms(r['max_us'])} | "
            f"{r['bad_status']} | {rss} | {wal} | {r['duration_s']:g} | "
            f"{cpu} | {verdict(r, bench.targets())} | {'; '.join(notes)} |"
        )
    return lines


def summary_lines(bench: Bench) -> list[str]:
    """Peak RSS over the run, restart readiness."""
    ready = bench.ready
    if ready:
        if bench.pg:
            which = (f"{len(ready)} restarts of instance 1 while the other{'s' if bench.n > 2 else ''} kept running"
                     if bench.n > 1 else f"{len(ready)} restarts")
            tail = ("first start on an empty database (signing key generated and sealed in the database): "
                    f"{bench.first_start * 1000:.1f} ms")
        else:
            which = f"{len(ready)} restarts"
            tail = (f"first start on an empty keys dir (key generated): {bench.first_start * 1000:.1f} ms; "
                    "size of deputy.db-wal before each restart (MB): "
                    + ", ".join(f"{w:.0f}" for w in bench.wal_before_restart))
        ready_line = (
            f"- ready to serve on a restart with existing keys (spawn → first 200 on /healthz), "
            f"{which}: median **{statistics.median(ready) * 1000:.1f} ms**, "
            f"max {max(ready) * 1000:.1f} ms (target < {READY_TARGET_MS} ms "
            f"{'✓' if max(ready) * 1000 < READY_TARGET_MS else '✗'}); {tail}"
        )
    else:
        ready_line = "- ready to serve on a restart: not measured (the run stopped early)"
    peak = max(bench.peak_rss_kb)
    ok = "✓" if peak / 1024 < RSS_TARGET_MB else "✗"
    if bench.n == 1:
        rss_line = (
            f"- deputy peak RSS over the whole run (VmHWM): **{peak / 1024:.1f} MB** "
            f"(target < {RSS_TARGET_MB} MB {ok}); "
            f"RSS when idle after start: {bench.idle_rss_kb[0] / 1024:.1f} MB. "
            "Each row's peak RSS is VmHWM reset just before its load window."
        )
    else:
        rss_line = (
            "- deputy peak RSS over the whole run (VmHWM), per instance: **"
            + " + ".join(f"{x / 1024:.1f}" for x in bench.peak_rss_kb)
            + f" MB** (target < {RSS_TARGET_MB} MB each {ok}); RSS when idle after start: "
            + " + ".join(f"{x / 1024:.1f}" for x in bench.idle_rss_kb)
            + " MB. Each row's peak RSS is VmHWM of each instance, reset just before its load window."
        )
    lines = [rss_line, ready_line]
    rate = {n: scenario_rate(bench.results, n) for n in ("cc_jwt", "cc_jwt_dpop")}
    if rate["cc_jwt"] and rate["cc_jwt_dpop"]:
        ratio = rate["cc_jwt_dpop"] / rate["cc_jwt"]
        windows = sum(1 for r in bench.results if r.get("scenario") == "cc_jwt" and r.get("rate"))
        over = f" over {windows} alternating windows each" if windows > 1 else ""
        cpu = {n: scenario_cpu_us(bench.results, n) for n in rate}
        lines.append(
            f"- cc_jwt with a DPoP proof: **{ratio * 100:.1f} %** of cc_jwt's rate{over} "
            f"({rate['cc_jwt_dpop']:,.0f} / {rate['cc_jwt']:,.0f} req/s; deputy CPU per request "
            f"{cpu['cc_jwt']:.0f} → {cpu['cc_jwt_dpop']:.0f} µs) "
            f"(target ≥ {DPOP_TARGET_RATIO * 100:.0f} % {'✓' if ratio >= DPOP_TARGET_RATIO else '✗'})"
        )
    return lines


def scenario_rate(results: list[dict], name: str) -> float | None:
    """req/s of a scenario over all its windows (time-weighted)."""
    rs = [r for r in results if r.get("scenario") == name and r.get("rate")]
    secs = sum(r["duration_us"] for r in rs)
    return sum(r["rate"] * r["duration_us"] for r in rs) / secs if secs else None


def scenario_cpu_us(results: list[dict], name: str) -> float:
    """deputy's CPU µs per answered request of a scenario over all its windows."""
    rs = [r for r in results if r.get("scenario") == name and r.get("answered")]
    answered = sum(r["answered"] for r in rs)
    cpu_s = sum(r["deputy_cores"] * r["duration_us"] / 1e6 for r in rs)
    return cpu_s / answered * 1e6 if answered else 0.0


def where_lines(bench: Bench) -> list[str]:
    """Where deputy's (and, on PostgreSQL, the database's and the proxy's) CPU went."""
    out = []
    for r in bench.results:
        if "threads" not in r:
            continue
        rate = r["rate"]

        def threads(d):
            return ", ".join(f"{k} {v:.2f} ({per_request(v, rate)})" for k, v in d.items())

        if bench.n == 1:
            line = f"- {r['scenario']}: " + threads(r["threads"])
        else:
            line = f"- {r['scenario']}: " + "; ".join(
                f"instance {i + 1}: {threads(d)}" for i, d in enumerate(r["instance_threads"]))
        line += f"; total {per_request(r['deputy_cores'], rate)}/request"
        if bench.pg:
            line += f"; postgres {r['postgres_cores']:.2f} ({per_request(r['postgres_cores'], rate)})"
            if bench.proxied:
                line += f", nginx {r['nginx_cores']:.2f} ({per_request(r['nginx_cores'], rate)})"
            if "pg" in r:
                p = r["pg"]
                line += (f"; {p['xids_per_request']:.2f} transaction ids and "
                         f"{p['wal_bytes_per_request'] / 1024:.1f} kB of WAL per request "
                         f"({p['wal_mb_per_s']:.1f} MB/s); context switches per request: "
                         f"deputy {p['deputy_switches_per_request']:.1f}, "
                         f"postgres {p['postgres_switches_per_request']:.1f}")
                if p.get("serialization_failures") is not None:
                    line += (f"; {p['serialization_failures']} serialization failures "
                             f"({p['serialization_failures'] / max(r['answered'], 1) * 100:.1f} per 100 requests, "
                             "each a transaction run again)")
            if "pg_statements" in r:
                st = r["pg_statements"]
                line += (f"; pg_stat_statements: {st['per_request']:.1f} statements, {st['us_per_request']:.0f} µs "
                         "executing per request, most time in: "
                         + ", ".join(f"`{q}` ×{c:.2f} {m:.0f} µs" for q, c, m in st["top"][:3]))
        out.append(line)
    return out


def machine_lines(benches: list[Bench], command: str) -> tuple[str, list[str]]:
    a = benches[0].args
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True).stdout.strip()
        rev += " (src/ has uncommitted changes)" if dirty else ""
    except OSError:
        rev = "?"
    pg = any(b.pg for b in benches)
    sharing = "wrk, nginx, PostgreSQL and deputy share these CPUs" if pg else "wrk and deputy share these CPUs"
    workers = f"{os.cpu_count()} HTTP workers" + (" per instance" if pg else "")
    return rev, [
        f"- command: `{command}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; deputy commit {rev}",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; {sharing}",
        f"- load: wrk -t{max(1, min(a.threads, a.connections))} -c{a.connections}, closed loop (each connection waits for its answer); "
        f"deputy `serve` with default settings, {workers}, `DEPUTY_LOG_LEVEL=warn`",
    ]


def es256_line(es256: dict) -> str:
    if es256.get("sign_per_s"):
        return (f"- ES256 single thread (josekit/OpenSSL, `cargo run --release --example es256_rate`): "
                f"**sign {es256['sign_per_s']:,.0f}/s, verify {es256['verify_per_s']:,.0f}/s**")
    return "- ES256 single thread: not measured (run through bench/run.sh)"


WHERE_HEAD = ("Where deputy's CPU went during each load window: cores per thread name (µs of CPU per request); "
              "one thread near 1.00 core is a serial bottleneck:")
WAL_NOTE = ("- WAL MB: size of `deputy.db-wal` on disk after the window (SQLite's write-ahead log; it grows "
            "when checkpoints cannot keep up or never reset it)")
CPU_NOTE = ("- CPU column: cores busy during the load window for deputy / wrk / every other process on the machine "
            "(other > 0.1 means something else competed for the CPUs and the row is pessimistic)")


def table(benches: list[Bench], es256: dict, command: str) -> str:
    _, head = machine_lines(benches, command)
    notes: list[str] = []
    for b in benches:
        notes += [n for n in b.notes if n not in notes]
    if len(benches) == 1 and not benches[0].pg:
        # SQLite alone: the format of every earlier results.md.
        bench = benches[0]
        lines = [
            "# deputy benchmark results",
            "",
            *head,
            *[f"- {n}" for n in notes],
            WAL_NOTE,
            CPU_NOTE,
            "",
            *result_rows(bench),
            "",
            *summary_lines(bench),
            es256_line(es256),
            "",
            WHERE_HEAD,
            "",
            *where_lines(bench),
        ]
        return "\n".join(lines) + "\n"

    pg = [b for b in benches if b.pg]
    lines = [
        "# deputy benchmark results",
        "",
        *head,
        *[f"- {n}" for n in notes],
        WAL_NOTE + "; PostgreSQL has no such file: `–`",
        CPU_NOTE,
    ]
    if pg:
        lines += [
            "- PostgreSQL tables: the CPU column is deputy (every instance) / postgres (the cluster's processes: "
            "backends, WAL writer, checkpointer, ...) / nginx (master and workers; `–` without the proxy) / wrk / "
            "other; peak RSS is listed per instance; targets are issue 13's (cc_jwt ≥ 3,000 req/s, "
            "exchange ≥ 2,500, refresh ≥ 1,500, introspect ≥ 8,000, zero non-2xx)",
        ]
        if pg[0].cluster:
            try:
                lines.append("- " + pg[0].cluster.describe())
            except RuntimeError as e:
                lines.append(f"- PostgreSQL: settings not read ({e})")
        if any(b.proxied for b in pg):
            lines.append(
                f"- proxy: {nginx_version(benches[0].args.nginx)}, `worker_processes auto`, round robin over the "
                "instances, HTTP/1.1 keep-alive to them (`keepalive 64` idle connections per worker), `Host` and "
                "`X-Forwarded-For` passed; each instance runs with `--issuer` = the proxy's URL and "
                "`--trusted-proxies 127.0.0.1`; deputy's pool: 16 PostgreSQL connections per instance"
            )
    lines.append(es256_line(es256))
    for b in benches:
        lines += ["", f"## {b.label()}", ""]
        if b.aborted:
            lines += [f"The run stopped early: {str(b.aborted).splitlines()[0][:300]}", ""]
        lines += [*result_rows(b), "", *summary_lines(b), "", WHERE_HEAD, "", *where_lines(b)]
    if len(benches) > 1:
        lines += side_by_side(benches)
    return "\n".join(lines) + "\n"


def side_by_side(benches: list[Bench]) -> list[str]:
    names = [s for s in ALL_SCENARIOS if any(r["scenario"] == s for b in benches for r in b.results)]
    head = "| scenario | " + " | ".join(b.label() for b in benches) + " | PostgreSQL target |"
    lines = ["", "## Side by side (req/s, same run)", "", head,
             "|---|" + "---:|" * len(benches) + "---|"]
    for s in names:
        cells = []
        for b in benches:
            r = next((r for r in b.results if r["scenario"] == s), None)
            if r is None:
                cells.append("")
            elif "rate" not in r:
                cells.append("FAILED" if "failed" in r else "not available")
            else:
                cells.append(f"{r['rate']:,.0f}" + (f" ({r['bad_status']} non-2xx)" if r["bad_status"] else ""))
        t = PG_TARGETS.get(s)
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {f'≥{t[0]:,}' if t else '–'} |")
    return lines


def nginx_version(nginx: str | None) -> str:
    try:
        p = subprocess.run([nginx or "nginx", "-v"], capture_output=True, text=True)
        return (p.stderr or p.stdout).strip().replace("nginx version: ", "") or "nginx"
    except OSError:
        return "nginx"


def deployments(args) -> list[tuple[str, int, bool]]:
    """(database, instances, behind the proxy) for each table, in run order."""
    out = []
    if args.database in ("sqlite", "both"):
        out.append(("sqlite", 1, False))
    if args.database in ("postgres", "both"):
        for n in args.instances:
            out.append(("postgres", n, True))
        if args.direct:
            out.append(("postgres", 1, False))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--person-duration", type=float, default=None,
                    help="duration for the code and refresh scenarios (default: --duration)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scenario", action="append", choices=ALL_SCENARIOS)
    ap.add_argument("--database", choices=["sqlite", "postgres", "both"], default="sqlite",
                    help="sqlite (one instance, direct), postgres (instances behind nginx), or both, one after "
                         "the other, in one results file")
    ap.add_argument("--instances", action="append", default=None,
                    help="PostgreSQL: deputy instances behind the proxy; repeat or comma-separate for several "
                         "tables (default: 1 and 2)")
    ap.add_argument("--direct", action="store_true",
                    help="PostgreSQL: also one instance without the proxy (an extra table)")
    ap.add_argument("--pg-url", default=None,
                    help="a running PostgreSQL cluster (scripts/pg-cluster start DIR prints it); each table gets "
                         "a fresh database in it")
    ap.add_argument("--pg-dir", default=None,
                    help="that cluster's directory (its postmaster.pid gives the postgres CPU column)")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--pg-statements", action="store_true",
                    help="PostgreSQL: reset pg_stat_statements before each window and report every statement "
                         "after it (the cluster must preload it; bench/run.sh --pg-statements does)")
    ap.add_argument("--es256", default="{}", help="JSON from the es256_rate example")
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--results", default=str(HERE / "results.md"))
    ap.add_argument("--perf", action="store_true", help="perf record deputy during each load window")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the scenarios this many times in turn on the same deployment (alternating windows)")
    for s in ("cc_jwt", "code", "refresh", "exchange"):
        ap.add_argument(f"--{s.replace('_', '-')}-requests", dest=f"{s}_requests", type=int, default=None)
    args = ap.parse_args()
    args.scenario = args.scenario or ALL_SCENARIOS
    # Keep the documented order whatever the command line order.
    args.scenario = [s for s in ALL_SCENARIOS if s in args.scenario]
    try:
        args.instances = sorted({int(x) for v in (args.instances or ["1,2"]) for x in v.split(",") if x.strip()})
    except ValueError:
        ap.error("--instances takes numbers, e.g. --instances 1 --instances 2 or --instances 1,2")
    if any(n < 1 for n in args.instances):
        ap.error("--instances must be at least 1")
    cluster = None
    if args.database != "sqlite":
        if not args.pg_url:
            ap.error("--database postgres needs --pg-url (bench/run.sh starts a cluster and passes it)")
        if not (shutil.which(args.nginx) or os.access(args.nginx, os.X_OK)):
            ap.error(f"no nginx at {args.nginx} (apt-get install nginx-light)")
        cluster = PostgresCluster(args.pg_url, args.pg_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    benches: list[Bench] = []
    aborted = None
    try:
        for kind, n, proxied in deployments(args):
            bench = Bench(args, kind, n, proxied, cluster)
            benches.append(bench)
            log(f"== {bench.label()}")
            try:
                bench.run()
            except Exception as e:  # still print what was measured, go on with the next table
                bench.aborted = aborted = e
                log(f"{bench.label()}: run aborted: {e}")
            finally:
                bench.cleanup()
    except BaseException:  # SIGTERM, Ctrl-C: everything is stopped; nothing to report
        if not (args.keep or args.perf):
            for bench in benches:
                shutil.rmtree(bench.tmp, ignore_errors=True)
        raise
    text = table(benches, json.loads(args.es256 or "{}"), args.command)
    print()
    print(text)
    Path(args.results).write_text(text)
    log(f"results written to {args.results}")
    for bench in benches:
        if args.keep or args.perf:
            log(f"generated data kept in {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    failed = [r for b in benches for r in b.results if "failed" in r or r.get("bad_status")]
    sys.exit(1 if failed or aborted else 0)


if __name__ == "__main__":
    main()
