"""PostgreSQL goes away under load and comes back: deputy answers 503
`temporarily_unavailable` while it is gone (never a 200 for something it did
not commit, never a 500), `/readyz` says 503 and `/healthz` 200, and the same
deputy process serves again within seconds once the database is back, with
nothing lost or doubled.

PostgreSQL only (DEPUTY_CONFORMANCE_POSTGRES set): it starts a cluster of
its own with scripts/pg-cluster in a temporary directory, stops it with
`scripts/pg-cluster stop` (pg_ctl -m fast) in the middle of a load of client
credentials (secret and private_key_jwt) and refreshes, and starts it again
with `scripts/pg-cluster start --same-port` so the URL deputy holds stays
right."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from conftest import (PG_BASE, REPO, ClientKey, Deputy, assertion_form, basic_auth, clean_env, jwt_parts,
                      make_assertion)
from flows import add_client, add_user, authorize, redeem, settings
from hardening import Log, db_readonly, integrity_problems, sha256_b64url

pytestmark = pytest.mark.skipif(PG_BASE is None, reason="PostgreSQL only: set DEPUTY_CONFORMANCE_POSTGRES")

PW = "correct horse battery staple"
API = "https://api.example/"
FAMILIES = 6
PG_CLUSTER = str(REPO / "scripts" / "pg-cluster")
# Browser pages that read the database even without cookies: /authorize (the
# client) and /account (it starts a sign-in). /login and /logout answer the
# same way through one function (`pages::failure`).
PAGES = ("/authorize?client_id=web&response_type=code&scope=openid", "/account")


def pg_cluster(*args: str) -> str:
    r = subprocess.run([PG_CLUSTER, *args], capture_output=True, text=True, timeout=180, env=clean_env())
    assert r.returncode == 0, f"pg-cluster {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}"
    return r.stdout.strip()


@pytest.fixture
def cluster():
    """A PostgreSQL cluster of this test's own: (directory, URL). Under /tmp
    with a traversable directory, since as root it runs as user postgres."""
    d = Path(tempfile.mkdtemp(prefix="deputy-pgfault-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        url = pg_cluster("start", str(d / "pg"))
        yield d / "pg", url
    finally:
        subprocess.run([PG_CLUSTER, "stop", str(d / "pg")], capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def deputy_on(cluster, tmp_path, request):
    """A deputy (not started) on a schema of the test's own cluster; stopped
    at the end whatever happens, and its log shown if the test fails."""
    _, url = cluster
    d = Deputy(tmp_path / "fault", settings(DEPUTY_REFRESH_GRACE="30"), pg_base=url)
    request.node._deputies = [d]
    yield d
    d.stop()


class Family:
    """One person's refresh family, rotated by one load thread."""

    def __init__(self, fid: int, rt: str):
        self.fid = fid
        self.current = rt
        self.received = [rt]


def test_database_outage_is_503_and_deputy_recovers_without_restart(cluster, deputy_on):
    """RFC 6749 §5.2 / RFC 6749 §4.1.2.1 (`temporarily_unavailable`), README
    (a response is sent only after its transaction committed; single use of
    refresh tokens and assertion jtis): PostgreSQL stopped (fast) under a
    load of client credentials (secret and private_key_jwt) and refreshes:
    every answer is 200 or 503 `temporarily_unavailable`, nothing else,
    never a dropped connection; requests made while the database is down are
    all 503, and so are the browser pages that read the database (with
    Retry-After); /readyz 503 and /healthz 200 meanwhile. Started again on the
    same port: the same deputy process answers 200 again within 5 s.
    Then: every token a client got with 200 is recorded as issued to it;
    every refresh family has exactly one live token, the one its client
    holds; every accepted assertion jti is recorded once; amcheck finds the
    schema sound."""
    pg_dir, url = cluster
    d = deputy_on
    add_user(d, "alice", PW)
    add_client(d, "web")
    svc = d.add_client("svc", "client_secret_basic", audiences=(API,))["client_secret"]
    key = ClientKey("ES256", kid="fault-k1")
    d.add_client("jwtsvc", "private_key_jwt", key=key, audiences=(API,))
    d.start()
    pid = d.proc.pid
    families = []
    for i in range(FAMILIES):
        code, verifier = authorize(d, "web", "alice", PW, "openid notes:read")
        r = redeem(d, "web", code, verifier)
        assert r.status_code == 200, r.text
        families.append(Family(i, r.json()["refresh_token"]))

    log = Log()
    stop = threading.Event()
    jtis: dict[str, str] = {}
    jti_lock = threading.Lock()

    def cc_secret():
        s = requests.Session()
        while not stop.is_set():
            rec = log.call("cc-secret", None, "svc", lambda: s.post(
                d.token_endpoint, data={"grant_type": "client_credentials"}, headers=basic_auth("svc", svc),
                timeout=10))
            if rec.status != 200:
                stop.wait(0.02)

    def cc_jwt():
        s = requests.Session()
        while not stop.is_set():
            assertion = make_assertion(key, "jwtsvc", d.issuer)
            jti = jwt_parts(assertion)[1]["jti"]
            rec = log.call("cc-jwt", jti, "jwtsvc", lambda: s.post(
                d.token_endpoint, data=assertion_form(assertion), timeout=10))
            with jti_lock:
                jtis[jti] = rec.status
            if rec.status != 200:
                stop.wait(0.02)

    def refresher(fam: Family):
        s = requests.Session()
        while not stop.is_set():
            rt = fam.current
            rec = log.call("refresh", rt, "web", lambda: s.post(
                d.token_endpoint, data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": "web"},
                timeout=10), extra=fam.fid)
            if rec.status == 200:
                fam.current = rec.body["refresh_token"]
                fam.received.append(fam.current)
            else:
                stop.wait(0.05)  # a 503: the same token again, as a client would

    threads = [threading.Thread(target=f, daemon=True) for f in (cc_secret, cc_secret, cc_jwt, cc_jwt)]
    threads += [threading.Thread(target=refresher, args=(f,), daemon=True) for f in families]
    probes: list[tuple[str, float, int]] = []
    pages_down: list[tuple[str, int, str | None]] = []
    t = {}
    try:
        for th in threads:
            th.start()
        time.sleep(1.5)
        t["stop"] = time.time()
        pg_cluster("stop", str(pg_dir))
        t["stopped"] = time.time()
        while time.time() - t["stopped"] < 2.5:
            for path in ("/readyz", "/healthz"):
                r = requests.get(d.direct + path, timeout=10)
                probes.append((path, time.time(), r.status_code))
            # The pages a person sees say so too: 503 and Retry-After, not 500.
            for path in PAGES:
                r = requests.get(d.direct + path, timeout=10, allow_redirects=False)
                pages_down.append((path, r.status_code, r.headers.get("Retry-After")))
            time.sleep(0.2)
        t["start"] = time.time()
        again = pg_cluster("start", "--same-port", str(pg_dir))
        assert again == url, (again, url)
        t["started"] = time.time()
        # Recovery: /readyz and a fresh token request both 200, same process.
        recovered = None
        while time.time() - t["started"] < 5:
            ready = requests.get(d.direct + "/readyz", timeout=10).status_code
            tok = requests.post(d.token_endpoint, data={"grant_type": "client_credentials"},
                                headers=basic_auth("svc", svc), timeout=10).status_code
            if ready == 200 and tok == 200:
                recovered = time.time()
                break
            time.sleep(0.1)
        assert recovered is not None, f"no recovery within 5 s of the restart:\n{d.log_tail()}"
        t["recovered"] = recovered
        time.sleep(1.5)  # load on the recovered database
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=30)
    assert d.proc is not None and d.proc.poll() is None and d.proc.pid == pid, "deputy was restarted or died"

    recs = log.all()
    print("fault timeline (s from stop):", {k: round(v - t["stop"], 2) for k, v in t.items()},
          "answers:", Counter((r.op, r.status) for r in recs))
    errors = [r for r in recs if r.error is not None]
    assert not errors, f"requests without an answer: {errors[:5]}"
    bad = [r for r in recs if r.status not in (200, 503)]
    assert not bad, f"answers other than 200 or 503: {bad[:5]}"
    unavailable = [r for r in recs if r.status == 503]
    wrong_503 = [r for r in unavailable if r.body.get("error") != "temporarily_unavailable"]
    assert not wrong_503, wrong_503[:5]
    during = [r for r in recs if r.t0 > t["stopped"] and r.t1 < t["start"]]
    assert during and all(r.status == 503 for r in during), \
        f"answers while the database was down: {Counter(r.status for r in during)}"
    assert {r.op for r in during} == {"cc-secret", "cc-jwt", "refresh"}, Counter(r.op for r in during)
    slow = [r for r in during if r.t1 - r.t0 > 5]
    assert not slow, f"503s that took over 5 s: {slow[:5]}"
    assert pages_down and {(p, s, ra) for p, s, ra in pages_down} == {(p, 503, "1") for p in PAGES}, \
        sorted(set(pages_down))
    down_probes = [(p, s) for p, at, s in probes]
    assert down_probes and set(down_probes) == {("/readyz", 503), ("/healthz", 200)}, down_probes
    after = [r for r in recs if r.t0 > t["recovered"]]
    assert after and all(r.status == 200 for r in after), Counter((r.op, r.status) for r in after)
    assert Counter(r.op for r in after).keys() == {"cc-secret", "cc-jwt", "refresh"}

    # Each family's current token rotates once more: the chain held.
    for fam in families:
        r = requests.post(d.token_endpoint, data={"grant_type": "refresh_token", "refresh_token": fam.current,
                                                  "client_id": "web"}, timeout=10)
        assert r.status_code == 200, (fam.fid, r.status_code, r.text)
        fam.current = r.json()["refresh_token"]
        fam.received.append(fam.current)
    d.stop()

    conn = db_readonly(d)
    try:
        wrong = []
        for r in recs:
            if r.status != 200:
                continue
            c = jwt_parts(r.body["access_token"])[1]
            row = conn.execute("SELECT kind, client_id FROM tokens WHERE jti = ?", (c["jti"],)).fetchone()
            if row is None or (row["kind"], row["client_id"]) != ("access", r.client):
                wrong.append((r, c["jti"], dict(row) if row else None))
        assert not wrong, f"answered 200 but not recorded as such: {wrong[:5]}"
        twice = conn.execute("SELECT client_id, jti, COUNT(*) FROM used_assertions "
                             "GROUP BY client_id, jti HAVING COUNT(*) > 1").fetchall()
        assert not twice, [tuple(x) for x in twice]
        for jti, status in jtis.items():
            if status == 200:
                row = conn.execute("SELECT 1 FROM used_assertions WHERE client_id = 'jwtsvc' AND jti = ?",
                                   (jti,)).fetchone()
                assert row is not None, f"accepted assertion jti {jti} not recorded: it could be replayed"
        split = conn.execute("SELECT family_id, COUNT(*) FROM refresh_tokens WHERE consumed_at IS NULL "
                             "AND revoked_at IS NULL GROUP BY family_id HAVING COUNT(*) > 1").fetchall()
        assert not split, f"refresh families with two live successors: {[tuple(x) for x in split]}"
        for fam in families:
            ids = set()
            for rt in fam.received:
                row = conn.execute("SELECT family_id FROM refresh_tokens WHERE token_hash = ?",
                                   (sha256_b64url(rt),)).fetchone()
                assert row is not None, f"family {fam.fid}: a refresh token its client received is not recorded"
                ids.add(row["family_id"])
            assert len(ids) == 1, (fam.fid, ids)
            live = conn.execute("SELECT token_hash FROM refresh_tokens WHERE family_id = ? AND consumed_at IS NULL "
                                "AND revoked_at IS NULL", (ids.pop(),)).fetchall()
            assert [x[0] for x in live] == [sha256_b64url(fam.current)], (fam.fid, [tuple(x) for x in live])
    finally:
        conn.close()
    assert integrity_problems(d) == []
