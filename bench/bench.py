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

ALL_SCENARIOS = ["jwks", "cc_basic", "introspect", "cc_jwt", "exchange", "code", "refresh"]

# Targets from issue 8 (same machine): minimum req/s and maximum p99 (ms).
TARGETS = {
    "cc_jwt": (5500, 10.0),
    "cc_basic": (8000, None),
    "introspect": (15000, 5.0),
    "exchange": (4000, None),
    "refresh": (3000, None),
}
RSS_TARGET_MB = 100
READY_TARGET_MS = 200

# Expected rates, used only to size the pre-generated unique requests
# (rate x duration x margin); a run that exhausts them says so.
EXPECTED_RATE = {"cc_jwt": 9000, "code": 3500, "refresh": 3500, "exchange": 6000}
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


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin
        self.tmp = Path(tempfile.mkdtemp(prefix="deputy-bench-"))
        self.db = self.tmp / "deputy.db"
        self.keys = self.tmp / "keys"
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen | None = None
        self.server_log = self.tmp / "deputy.log"
        self.results: list[dict] = []
        self.peak_rss_kb = 0
        self.verifier = b64u(secrets.token_bytes(32))
        self.challenge = b64u(hashlib.sha256(self.verifier.encode()).digest())
        self.password = "bench-" + secrets.token_urlsafe(12)
        self.notes: list[str] = []
        self.perf_reports: dict[str, Path] = {}
        self.ready: list[float] = []
        self.wal_before_restart: list[float] = []
        self.first_start = 0.0
        self.idle_rss_kb = 0
        log(f"work dir {self.tmp}, issuer {self.issuer}")

    # ---------------------------------------------------------- deputy CLI
    def cli(self, *argv, stdin: str | None = None, check=True):
        cmd = [self.bin, "--database", str(self.db), "--keys-dir", str(self.keys), *argv]
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
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
        env = dict(os.environ, DEPUTY_LOG_LEVEL="warn")
        env.pop("DEPUTY_CONFIG", None)
        if getattr(self, "raised_limits", None) is None:
            probe = dict(env, **RAISED_LIMITS)
            p = subprocess.run(
                [self.bin, "--database", str(self.db), "--keys-dir", str(self.keys), "migrate"],
                env=probe, capture_output=True, text=True,
            )
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

    def start_server(self) -> float:
        env = self.server_env()
        cmd = [
            self.bin, "--database", str(self.db), "--keys-dir", str(self.keys), "serve",
            "--issuer", self.issuer, "--bind", f"127.0.0.1:{self.port}",
        ]
        logf = open(self.server_log, "ab")
        t0 = time.perf_counter()
        self.server = subprocess.Popen(cmd, env=env, stdout=logf, stderr=logf)
        ready = self.wait_healthz(t0)
        return ready

    def wait_healthz(self, t0: float, timeout: float = 10.0) -> float:
        """Seconds from t0 to the first 200 on /healthz (polling every 0.5 ms)."""
        req = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n\r\n".encode()
        while time.perf_counter() - t0 < timeout:
            if self.server.poll() is not None:
                raise RuntimeError(f"deputy exited ({self.server.returncode}): {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(req)
                    data = s.recv(64)
                    if data.startswith(b"HTTP/1.1 200"):
                        return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.0005)
        raise RuntimeError("deputy did not become ready within 10 s")

    def stop_server(self):
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def wal_mb(self) -> float:
        try:
            return (self.db.parent / (self.db.name + "-wal")).stat().st_size / 2**20
        except OSError:
            return 0.0

    def log_tail(self) -> str:
        try:
            return self.server_log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def status(self) -> dict[str, int]:
        out = {}
        for line in Path(f"/proc/{self.server.pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0])
        return out

    def reset_peak_rss(self) -> bool:
        """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
        self.peak_rss_kb = max(self.peak_rss_kb, self.status().get("VmHWM", 0))
        try:
            Path(f"/proc/{self.server.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

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
                ["perf", "record", "-F", "499", "-g", "-o", str(pdata), "-p", str(self.server.pid),
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
        return max(2000, int(EXPECTED_RATE[scenario] * duration * MARGIN))

    def deputy_cpu_s(self) -> float:
        text = Path(f"/proc/{self.server.pid}/stat").read_text()
        fields = text.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def thread_cpu_s(self) -> dict[str, float]:
        """CPU seconds per deputy thread, keyed by thread name (and id)."""
        out = {}
        for task in Path(f"/proc/{self.server.pid}/task").iterdir():
            try:
                text = (task / "stat").read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            out[f"{name}#{task.name}"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        return out

    def measure(self, scenario: str, env: dict, duration: float, note: str = "") -> dict:
        self.ensure_alive()
        reset = self.reset_peak_rss()
        log(f"{scenario}: load for {duration:g} s at {self.args.connections} connections")
        threads0 = self.thread_cpu_s()
        busy0, dep0, kids0, wall0 = machine_busy_s(), self.deputy_cpu_s(), children_cpu_s(), time.time()
        r = self.wrk(env, duration, perf_name=scenario)
        busy1, dep1, kids1, wall1 = machine_busy_s(), self.deputy_cpu_s(), children_cpu_s(), time.time()
        threads1 = self.thread_cpu_s()
        per_name: dict[str, float] = {}
        for k, v in threads1.items():
            name = k.split("#")[0]
            per_name[name] = per_name.get(name, 0.0) + (v - threads0.get(k, 0.0))
        window = r["duration_us"] / 1e6
        busiest = max(
            ((k.split("#")[0], v - threads0.get(k, 0.0)) for k, v in threads1.items()), key=lambda kv: kv[1]
        )
        r["threads"] = {k: round(v / window, 2) for k, v in sorted(per_name.items(), key=lambda kv: -kv[1]) if v > 0.01 * window}
        r["busiest_thread"] = (busiest[0], round(busiest[1] / window, 2))
        st = self.status()
        rss = st.get("VmHWM", 0)
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        dep, wrk_cpu = dep1 - dep0, kids1 - kids0
        other = max(0.0, (busy1 - busy0) - dep - wrk_cpu)
        r.update(
            scenario=scenario, duration_s=duration, rss_kb=rss, rss_reset=reset, note=note,
            wal_mb=self.wal_mb(),
            # CPU in cores: deputy over the load window, others over the wall time.
            deputy_cores=dep / (r["duration_us"] / 1e6),
            wrk_cores=wrk_cpu / (wall1 - wall0),
            other_cores=other / (wall1 - wall0),
        )
        self.results.append(r)
        log(
            f"{scenario}: {r['rate']:.0f} req/s, p50 {r['p50_us']/1000:.2f} ms, p99 {r['p99_us']/1000:.2f} ms, "
            f"max {r['max_us']/1000:.2f} ms, non-2xx {r['bad_status']}, bad bodies {r['bad_body']}, "
            f"peak RSS {rss/1024:.1f} MB, WAL {r['wal_mb']:.0f} MB, statuses {r['statuses']}; CPU cores: deputy {r['deputy_cores']:.2f}, "
            f"wrk {r['wrk_cores']:.2f}, other processes {r['other_cores']:.2f}; deputy threads (cores): {r['threads']}"
        )
        self.ensure_alive()
        return r

    def not_available(self, scenario: str, why: str):
        log(f"{scenario}: not available: {why}")
        self.results.append({"scenario": scenario, "unavailable": why})

    def ensure_alive(self):
        if self.server.poll() is not None:
            raise RuntimeError(f"deputy died ({self.server.returncode}): {self.log_tail()}")

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
            # Chunks small enough that every code is redeemed within its 60 s.
            want = min(n - len(tokens), 40000)
            codes = self.harvest_codes(want, 25)
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
        """Spawn-to-first-200 on /healthz, restarting on the existing db and keys."""
        times = []
        self.wal_before_restart = []
        for _ in range(rounds):
            self.stop_server()
            self.wal_before_restart.append(self.wal_mb())
            times.append(self.start_server())
        return times

    def run(self):
        a = self.args
        self.register()
        first = self.start_server()
        self.first_start = first
        log(f"deputy up (first start, key generated) in {first * 1000:.0f} ms, pid {self.server.pid}")
        st = self.status()
        self.idle_rss_kb = st.get("VmRSS", 0)
        durations = {}
        for s in a.scenario:
            durations[s] = a.duration
            if s in ("refresh", "code") and a.person_duration:
                durations[s] = a.person_duration
        for s in a.scenario:
            try:
                getattr(self, "s_" + s)(durations[s])
            except Exception as e:  # report, keep the other scenarios
                log(f"{s}: FAILED: {e}")
                self.results.append({"scenario": s, "failed": str(e)[:500]})
                if self.server.poll() is not None:
                    raise
        self.peak_rss_kb = max(self.peak_rss_kb, self.status().get("VmHWM", 0))
        self.ready = self.readiness()
        log("ready after restart (ms): " + ", ".join(f"{t * 1000:.1f}" for t in self.ready))
        self.stop_server()
        if a.perf:
            self.perf_summaries()

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


def verdict(r) -> str:
    t = TARGETS.get(r["scenario"])
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


def table(bench: Bench, es256: dict, command: str) -> str:
    a = bench.args
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
    lines = [
        "# deputy benchmark results",
        "",
        f"- command: `{command}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; deputy commit {rev}",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; "
        f"wrk and deputy share these CPUs",
        f"- load: wrk -t{max(1, min(a.threads, a.connections))} -c{a.connections}, closed loop (each connection waits for its answer); "
        f"deputy `serve` with default settings, {os.cpu_count()} HTTP workers, `DEPUTY_LOG_LEVEL=warn`",
        *[f"- {n}" for n in bench.notes],
        "- WAL MB: size of `deputy.db-wal` on disk after the window (SQLite's write-ahead log; it grows "
        "when checkpoints cannot keep up or never reset it)",
        "- CPU column: cores busy during the load window for deputy / wrk / every other process on the machine "
        "(other > 0.1 means something else competed for the CPUs and the row is pessimistic)",
        "",
        "| scenario | req/s | p50 ms | p99 ms | max ms | non-2xx | peak RSS MB | WAL MB | s | CPU deputy/wrk/other | target | notes |",
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
        lines.append(
            f"| {r['scenario']} | {r['rate']:,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | {ms(r['max_us'])} | "
            f"{r['bad_status']} | {r['rss_kb'] / 1024:.1f} | {r['wal_mb']:.0f} | {r['duration_s']:g} | "
            f"{r['deputy_cores']:.2f} / {r['wrk_cores']:.2f} / {r['other_cores']:.2f} | {verdict(r)} | {'; '.join(notes)} |"
        )
    ready = bench.ready
    if ready:
        ready_line = (
            f"- ready to serve on a restart with existing keys (spawn → first 200 on /healthz), "
            f"{len(ready)} restarts: median **{statistics.median(ready) * 1000:.1f} ms**, "
            f"max {max(ready) * 1000:.1f} ms (target < {READY_TARGET_MS} ms "
            f"{'✓' if max(ready) * 1000 < READY_TARGET_MS else '✗'}); "
            f"first start on an empty keys dir (key generated): {bench.first_start * 1000:.1f} ms; "
            f"size of deputy.db-wal before each restart (MB): "
            + ", ".join(f"{w:.0f}" for w in bench.wal_before_restart)
        )
    else:
        ready_line = "- ready to serve on a restart: not measured (the run stopped early)"
    lines += [
        "",
        f"- deputy peak RSS over the whole run (VmHWM): **{bench.peak_rss_kb / 1024:.1f} MB** "
        f"(target < {RSS_TARGET_MB} MB {'✓' if bench.peak_rss_kb / 1024 < RSS_TARGET_MB else '✗'}); "
        f"RSS when idle after start: {bench.idle_rss_kb / 1024:.1f} MB. "
        "Each row's peak RSS is VmHWM reset just before its load window.",
        ready_line,
        (
            f"- ES256 single thread (josekit/OpenSSL, `cargo run --release --example es256_rate`): "
            f"**sign {es256['sign_per_s']:,.0f}/s, verify {es256['verify_per_s']:,.0f}/s**"
            if es256.get("sign_per_s")
            else "- ES256 single thread: not measured (run through bench/run.sh)"
        ),
        "",
        "Where deputy's CPU went during each load window: cores per thread name (µs of CPU per request); "
        "one thread near 1.00 core is a serial bottleneck:",
        "",
        *[f"- {r['scenario']}: " + ", ".join(
            f"{k} {v:.2f} ({v / max(r['rate'], 1e-9) * 1e6:.0f} µs)" for k, v in r["threads"].items())
          + f"; total {r['deputy_cores'] / max(r['rate'], 1e-9) * 1e6:.0f} µs/request"
          for r in bench.results if "threads" in r],
    ]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--person-duration", type=float, default=None,
                    help="duration for the code and refresh scenarios (default: --duration)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scenario", action="append", choices=ALL_SCENARIOS)
    ap.add_argument("--es256", default="{}", help="JSON from the es256_rate example")
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--results", default=str(HERE / "results.md"))
    ap.add_argument("--perf", action="store_true", help="perf record deputy during each load window")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    for s in ("cc_jwt", "code", "refresh", "exchange"):
        ap.add_argument(f"--{s.replace('_', '-')}-requests", dest=f"{s}_requests", type=int, default=None)
    args = ap.parse_args()
    args.scenario = args.scenario or ALL_SCENARIOS
    # Keep the documented order whatever the command line order.
    args.scenario = [s for s in ALL_SCENARIOS if s in args.scenario]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args)
    aborted = None
    try:
        bench.run()
    except Exception as e:  # still print what was measured
        aborted = e
        log(f"run aborted: {e}")
    finally:
        bench.stop_server()
    text = table(bench, json.loads(args.es256 or "{}"), args.command)
    print()
    print(text)
    Path(args.results).write_text(text)
    log(f"results written to {args.results}")
    if args.keep or args.perf:
        log(f"generated data kept in {bench.tmp}")
    else:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    failed = [r for r in bench.results if "failed" in r or r.get("bad_status")]
    sys.exit(1 if failed or aborted else 0)


if __name__ == "__main__":
    main()
