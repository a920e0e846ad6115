"""Interleaved A/B of deputy binaries on one scenario that needs no unique
inputs (introspect, cc_basic or jwks), for "did this change make it slower?"
questions on a noisy host: every binary serves at once, each on its own fresh
SQLite deployment, and short wrk windows take turns between them, so a slow
moment of the host hits all of them alike. Prints req/s and deputy CPU µs per
request per binary, summed over all its windows.

  bench/.venv/bin/python bench/ab.py --scenario introspect --rounds 9 --window 3 BIN_A BIN_B [BIN_C ...]
"""
import argparse
import base64
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua" / "replay.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
RAISED_LIMITS = {"DEPUTY_RATE_LIMIT_CLIENT": "1000000", "DEPUTY_RATE_LIMIT_ADDRESS": "1000000"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def deploy(binary: str, port: int, env: dict) -> dict:
    d = tempfile.mkdtemp(prefix="deputy-ab-")
    base = [binary, "--database", f"{d}/deputy.db", "--keys-dir", f"{d}/keys"]
    subprocess.run(base + ["migrate"], env=env, check=True, capture_output=True)
    out = subprocess.run(
        base + ["client", "add", "--id", "svc-basic", "--kind", "service", "--auth", "client_secret_basic",
                "--scope", "read", "--audience", "https://api.example"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    auth = "Basic " + base64.b64encode(f"svc-basic:{json.loads(out)['client_secret']}".encode()).decode()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(base + ["serve", "--issuer", url, "--bind", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(url + "/token", data=b"grant_type=client_credentials",
                                     headers={"Authorization": auth})
        token = json.loads(urllib.request.urlopen(req).read())["access_token"]
    except BaseException:
        proc.terminate()
        raise
    return {"bin": binary, "proc": proc, "url": url, "auth": auth, "token": token, "dir": d,
            "answered": 0, "cpu": 0.0, "secs": 0.0, "non2xx": 0}


def load(s: dict, scenario: str) -> dict:
    if scenario == "jwks":
        return {"BENCH_METHOD": "GET", "BENCH_PATH": "/jwks", "BENCH_EXPECT": '"keys"'}
    body = "token=" + s["token"] if scenario == "introspect" else "grant_type=client_credentials"
    return {"BENCH_METHOD": "POST", "BENCH_PATH": "/introspect" if scenario == "introspect" else "/token",
            "BENCH_HEADERS": "Authorization: " + s["auth"], "BENCH_BODY": body,
            "BENCH_EXPECT": '"active":true' if scenario == "introspect" else '"access_token"'}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=["introspect", "cc_basic", "jwks"], default="introspect")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--window", type=int, default=3, help="seconds per wrk window")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    env = dict(os.environ, DEPUTY_LOG_LEVEL="warn", **RAISED_LIMITS)
    env.pop("DEPUTY_CONFIG", None)
    servers = []
    try:
        for b in a.bins:
            servers.append(deploy(b, free_port(), env))
        for r in range(a.rounds):
            # Each round starts with the next binary: none always goes first.
            for s in servers[r % len(servers):] + servers[:r % len(servers)]:
                e = dict(os.environ, BENCH_THREADS="2", **load(s, a.scenario))
                c0, t0 = cpu_s(s["proc"].pid), time.time()
                out = subprocess.run(["wrk", "-t2", f"-c{a.connections}", f"-d{a.window}s", "-s", str(LUA), s["url"]],
                                     env=e, capture_output=True, text=True).stdout
                t1, c1 = time.time(), cpu_s(s["proc"].pid)
                n = int(re.search(r"(\d+) requests in", out).group(1))
                bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                s["answered"] += n
                s["cpu"] += c1 - c0
                s["secs"] += t1 - t0
                s["non2xx"] += int(bad.group(1)) if bad else 0
                print(f"round {r + 1} {s['bin']}: {n / (t1 - t0):,.0f} req/s, "
                      f"{(c1 - c0) / max(n, 1) * 1e6:.1f} µs CPU/request", flush=True)
    finally:
        for s in servers:
            s["proc"].terminate()
    for s in servers:
        print(f"TOTAL {s['bin']}: {s['answered']} answers, {s['answered'] / s['secs']:,.0f} req/s, "
              f"{s['cpu'] / max(s['answered'], 1) * 1e6:.1f} µs deputy CPU/request, non-2xx {s['non2xx']}")


if __name__ == "__main__":
    main()
