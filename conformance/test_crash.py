"""Crash safety ("Hardening"): deputy is SIGKILLed in the middle of a
concurrent load of refreshes, code redemptions, private_key_jwt client
credentials and token exchanges, restarted on the same database and keys,
and every single-use rule must still hold — RFC 6749 §4.1.2 / §10.5 (a code
is used once), RFC 6749 §6 / §10.4 + RFC 9700 §4.14.2 (refresh rotation: one
live branch per family), RFC 7523 §3 item 7 (an assertion jti is accepted
once), RFC 7662 §2.2 (what a client received is what the store says),
RFC 6819 §5.2.2.3 / §5.2.1.1 (replay of codes and refresh tokens).

README: single-use artifacts are consumed atomically in SQLite (WAL,
synchronous=NORMAL, so a commit survives a process crash) and a response is
sent only after its transaction committed. So a client that got a 200 holds
something the store recorded: after the restart every access token received
with 200 must be recorded with the same kind, client and subject and
introspect as active, and nothing may have been accepted twice.

Also: management commands running next to the server never make a request
fail (README: "Management commands may run while the server runs")."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import requests

from conftest import JWT_BEARER, ClientKey, Deputy, assertion_form, basic_auth, jwt_parts, make_assertion
from flows import (AT_TYPE, INACTIVE, REDIRECT_URI, TOKEN_EXCHANGE, add_client, add_user, allow_delegation, authorize,
                   pkce_pair, settings)
from hardening import Log, db_readonly, integrity_problems, kill9, sha256_b64url

PW = "correct horse battery staple"
API = "https://api.example/"
NOTES = "https://notes.example"
AGENT = ("authorization_code", "refresh_token", "token-exchange")

FAMILIES_PER_ROUND = 12
CODES_PER_ROUND = 60
SUBJECTS_PER_ROUND = 4
KILL_AFTER = (0.8, 1.7, 2.6)   # seconds into the load: three different moments
LOAD_LIMIT = 3.5               # hard bound of one load phase, seconds
# A kill is meaningful only once the load is running: on a slow machine the
# kill waits past its moment until this many answers came back (at most
# KILL_WAIT_LIMIT seconds more; then check_round reports the thin load).
MIN_ANSWERS_BEFORE_KILL = 60
KILL_WAIT_LIMIT = 10.0


# --------------------------------------------------------------------------
# The installation and its clients
# --------------------------------------------------------------------------


class Install:
    def __init__(self, d: Deputy):
        self.d = d
        self.key = ClientKey("ES256", kid="crash-k1")
        self.secret: dict[str, str] = {}
        self.browser: dict[str, requests.Session] = {}

    def setup(self):
        d = self.d
        add_user(d, "alice", PW)
        self.secret["web"] = add_client(d, "web", auth="client_secret_basic", scopes=("notes:read",))["client_secret"]
        self.secret["agent-x"] = add_client(d, "agent-x", kind="agent", auth="client_secret_basic", grants=AGENT,
                                            scopes=("notes:read",))["client_secret"]
        d.add_client("jwtsvc", "private_key_jwt", key=self.key, scopes=("read",), audiences=(API,))
        allow_delegation(d, "agent-x", NOTES, ["notes:read"], max_lifetime=300)

    # ---- client authentication, as each client does it
    def auth(self, client: str, data: dict) -> tuple[dict, dict]:
        if client == "jwtsvc":
            return {}, {**data, "client_assertion_type": JWT_BEARER,
                        "client_assertion": make_assertion(self.key, "jwtsvc", self.d.issuer)}
        return basic_auth(client, self.secret[client]), data

    def post(self, session: requests.Session, path: str, client: str, data: dict) -> requests.Response:
        headers, body = self.auth(client, data)
        return session.post(self.d.url(path), data=body, headers=headers, timeout=5, allow_redirects=False)

    # ---- sign-in: a browser session with consent, then the fast path
    def sign_in_browser(self, client: str):
        s = requests.Session()
        code, verifier = authorize(self.d, client, "alice", PW, "openid notes:read", session=s)
        self.browser[client] = s
        return code, verifier

    def fast_code(self, client: str, session: requests.Session | None = None) -> tuple[str, str]:
        """RFC 6749 §4.1.1 with an existing session and consent: 303 with a code at once."""
        s = session or self.browser[client]
        verifier, challenge = pkce_pair()
        r = s.get(self.d.url("/authorize"), params={
            "response_type": "code", "client_id": client, "redirect_uri": REDIRECT_URI,
            "scope": "openid notes:read", "state": "st", "code_challenge": challenge,
            "code_challenge_method": "S256"}, allow_redirects=False, timeout=5)
        assert r.status_code == 303, (r.status_code, r.text[:300])
        q = parse_qs(urlsplit(r.headers["Location"]).query)
        assert "code" in q, r.headers["Location"]
        return q["code"][0], verifier

    def redeem(self, session, client, code, verifier) -> requests.Response:
        return self.post(session, "/token", client, {"grant_type": "authorization_code", "code": code,
                                                     "redirect_uri": REDIRECT_URI, "code_verifier": verifier})

    def browser_copy(self, client: str) -> requests.Session:
        s = requests.Session()
        s.cookies.update(self.browser[client].cookies)
        return s


class Family:
    def __init__(self, fid: str, rt: str):
        self.fid = fid                # our name; the store's family_id is looked up afterwards
        self.current = rt             # the last refresh token this client received
        self.received = [rt]
        self.lock = threading.Lock()


def both(f1, f2):
    """Run two requests at the same moment (a racing retry / second tab)."""
    barrier = threading.Barrier(2, timeout=5)

    def run(f):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        f()

    t = threading.Thread(target=run, args=(f2,), daemon=True)
    t.start()
    run(f1)
    t.join(timeout=10)


# --------------------------------------------------------------------------
# One round: prepare, load, kill, restart, check
# --------------------------------------------------------------------------


class Round:
    def __init__(self, inst: Install, kill_after: float):
        self.inst, self.d, self.kill_after = inst, inst.d, kill_after
        self.log = Log()
        self.families: list[Family] = []
        self.codes: list[tuple[str, str]] = []
        self.subjects: list[str] = []
        self.code_lock = threading.Lock()
        self.doubles: list[tuple] = []   # (op, rec_a, rec_b)
        self.kill_time = None

    # ---- pools
    def prepare(self):
        inst, s = self.inst, requests.Session()
        for _ in range(FAMILIES_PER_ROUND):
            code, v = inst.fast_code("web")
            r = inst.redeem(s, "web", code, v)
            assert r.status_code == 200, r.text
            body = r.json()
            self.families.append(Family(f"family-{len(self.families)}", body["refresh_token"]))
        for _ in range(CODES_PER_ROUND):
            self.codes.append(inst.fast_code("web"))
        for _ in range(SUBJECTS_PER_ROUND):
            code, v = inst.fast_code("agent-x")
            r = inst.redeem(s, "agent-x", code, v)
            assert r.status_code == 200, r.text
            self.subjects.append(r.json()["access_token"])

    # ---- workers
    def refresh_worker(self, fams: list[Family], stop: threading.Event):
        n = 0
        while not stop.is_set():
            for fam in fams:
                if stop.is_set():
                    return
                n += 1
                rt = fam.current

                def one(rt=rt, fam=fam):
                    return self.log.call("refresh", rt, "web", lambda: self.inst.post(
                        s2(), "/token", "web", {"grant_type": "refresh_token", "refresh_token": rt}),
                        extra=fam.fid)

                if n % 4 == 0:
                    recs = []
                    both(lambda: recs.append(one()), lambda: recs.append(one()))
                    if len(recs) == 2:
                        self.doubles.append(("refresh", recs[0], recs[1]))
                else:
                    recs = [one()]
                for rec in recs:
                    self._after_refresh(fam, rt, rec)

    def _after_refresh(self, fam: Family, rt: str, rec):
        with fam.lock:
            if rec.status == 200 and fam.current == rt:
                fam.current = rec.body["refresh_token"]
                fam.received.append(fam.current)

    def code_worker(self, stop: threading.Event, k: int):
        b = self.inst.browser_copy("web")
        n = 0
        while not stop.is_set():
            n += 1
            with self.code_lock:
                item = self.codes.pop() if self.codes else None
            if item is None:
                try:
                    item = self.inst.fast_code("web", b)
                except (requests.RequestException, AssertionError):
                    stop.wait(0.02)
                    continue
            code, v = item

            def one():
                return self.log.call("code", code, "web", lambda: self.inst.redeem(s2(), "web", code, v))

            if (n + k) % 2 == 0:
                recs = []
                both(lambda: recs.append(one()), lambda: recs.append(one()))
                if len(recs) == 2:
                    self.doubles.append(("code", recs[0], recs[1]))
            else:
                one()

    def assertion_worker(self, stop: threading.Event, k: int):
        n = 0
        key, d = self.inst.key, self.d
        while not stop.is_set():
            n += 1
            jti = f"crash-{uuid.uuid4().hex}"
            a = make_assertion(key, "jwtsvc", d.issuer, jti=jti)

            def one():
                return self.log.call("assertion", jti, "jwtsvc", lambda: s2().post(
                    d.token_endpoint, data=assertion_form(a), timeout=5))

            if (n + k) % 5 == 0:
                recs = []
                both(lambda: recs.append(one()), lambda: recs.append(one()))
                if len(recs) == 2:
                    self.doubles.append(("assertion", recs[0], recs[1]))
            else:
                one()

    def exchange_worker(self, stop: threading.Event):
        s = requests.Session()
        rnd = random.Random(7)
        while not stop.is_set():
            subj = rnd.choice(self.subjects)
            self.log.call("exchange", subj, "agent-x", lambda: self.inst.post(s, "/token", "agent-x", {
                "grant_type": TOKEN_EXCHANGE, "subject_token": subj, "subject_token_type": AT_TYPE,
                "audience": NOTES, "task": "crash-test"}))

    # ---- the load and the kill
    def answered(self) -> int:
        return sum(1 for r in self.log.all() if r.status is not None)

    def run_load(self):
        stop = threading.Event()
        half = len(self.families) // 2
        threads = [
            threading.Thread(target=self.refresh_worker, args=(self.families[:half], stop), daemon=True),
            threading.Thread(target=self.refresh_worker, args=(self.families[half:], stop), daemon=True),
            threading.Thread(target=self.code_worker, args=(stop, 0), daemon=True),
            threading.Thread(target=self.code_worker, args=(stop, 1), daemon=True),
            threading.Thread(target=self.assertion_worker, args=(stop, 0), daemon=True),
            threading.Thread(target=self.assertion_worker, args=(stop, 1), daemon=True),
            threading.Thread(target=self.exchange_worker, args=(stop,), daemon=True),
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while time.monotonic() - t0 < self.kill_after:
            time.sleep(0.02)
        while (self.answered() < MIN_ANSWERS_BEFORE_KILL
               and time.monotonic() - t0 < self.kill_after + KILL_WAIT_LIMIT):
            time.sleep(0.02)
        self.kill_time = kill9(self.d)
        # Let the clients notice the dead server for a moment, then stop them.
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=LOAD_LIMIT + 5)
            assert not t.is_alive(), "a load thread did not stop"


_local = threading.local()


def s2() -> requests.Session:
    """A per-thread HTTP session (requests.Session is not shared across threads)."""
    s = getattr(_local, "s", None)
    if s is None:
        s = _local.s = requests.Session()
    return s


def introspect_active(inst: Install, token: str, client: str) -> dict:
    r = inst.post(s2(), "/introspect", client, {"token": token})
    assert r.status_code == 200, r.text
    return r.json()


def check_round(rd: Round, stats: dict):
    """Everything a client received, against the restarted server and then
    against the stopped server's database (read-only)."""
    inst, d, log = rd.inst, rd.d, rd.log
    recs = log.all()
    got = [r for r in recs if r.status is not None]
    lost = [r for r in recs if r.status is None]
    stats.update(requests=len(recs), answered=len(got), no_answer=len(lost),
                 by_op=dict(Counter(r.op for r in got if r.status == 200)))
    assert len(got) > 50, f"the load hardly ran before the kill: {len(got)} answers"
    in_flight = [r for r in lost if r.t0 < rd.kill_time]
    stats["in_flight_at_kill"] = len(in_flight)

    # -- every answer during the load is one of the expected ones (never 5xx)
    bad = []
    for r in got:
        ok = {"refresh": {(200, None)}, "exchange": {(200, None)},
              "code": {(200, None), (400, "invalid_grant")},
              "assertion": {(200, None), (401, "invalid_client")}}[r.op]
        if (r.status, None if r.status == 200 else (r.body or {}).get("error")) not in ok:
            bad.append(r)
    assert not bad, f"unexpected answers during the load: {bad[:10]}"

    # a code or assertion presented only once, and answered, was accepted
    presented = Counter((r.op, r.key) for r in recs if r.op in ("code", "assertion"))
    single_refused = [r for r in got if r.op in ("code", "assertion") and presented[(r.op, r.key)] == 1
                      and r.status != 200]
    assert not single_refused, f"fresh codes/assertions refused during the load: {single_refused[:5]}"

    # -- no code accepted twice; no assertion jti accepted twice
    code_ok = Counter(r.key for r in got if r.op == "code" and r.status == 200)
    assert all(n == 1 for n in code_ok.values()), [c for c, n in code_ok.items() if n > 1]
    jti_ok = Counter(r.key for r in got if r.op == "assertion" and r.status == 200)
    assert all(n == 1 for n in jti_ok.values()), [j for j, n in jti_ok.items() if n > 1]
    # a refused duplicate is refused for the right reason: its twin was accepted
    for op, a, b in rd.doubles:
        if op in ("code", "assertion") and a.status is not None and b.status is not None:
            assert sorted([a.status, b.status]) == [200, 400 if op == "code" else 401], (a, b)
        if op == "refresh" and a.status == 200 and b.status == 200:
            # README grace window: the retry gets the same successor, not a new branch.
            assert a.body["refresh_token"] == b.body["refresh_token"], (a, b)

    d.start()
    # -- after the restart, first (within the grace window): each
    # family's last received refresh token works once — also when the client
    # had presented it just before the kill and never got the answer (then the
    # retry must get the successor the store already committed).
    fams_in_flight = {f.fid for f in rd.families
                      if any(r.op == "refresh" and r.key == f.current for r in in_flight)}
    stats["families_in_flight_at_kill"] = len(fams_in_flight)
    post_restart = {}
    for fam in rd.families:
        presented = fam.current
        r = inst.post(s2(), "/token", "web", {"grant_type": "refresh_token", "refresh_token": presented})
        post_restart[fam.fid] = (presented, r.status_code, r.json())
        if r.status_code == 200:
            nxt = r.json()["refresh_token"]
            r2 = inst.post(s2(), "/token", "web", {"grant_type": "refresh_token", "refresh_token": nxt})
            assert r2.status_code == 200, f"the successor issued after the restart does not work: {r2.text}"
            fam.received += [nxt, r2.json()["refresh_token"]]
            fam.current = r2.json()["refresh_token"]

    # -- every access token received with 200 is active
    issued = [r for r in got if r.status == 200]
    client_of = {"refresh": "web", "code": "web", "assertion": "jwtsvc", "exchange": "agent-x"}
    with ThreadPoolExecutor(4) as ex:
        answers = list(ex.map(lambda r: (r, introspect_active(inst, r.body["access_token"], client_of[r.op])),
                              issued))
    # RFC 6749 §4.1.2: a code used twice SHOULD revoke the tokens issued from
    # it — deputy does. So tokens from a code whose refused second
    # redemption was answered must be inactive; all others active.
    replayed = {r.key for r in got if r.op == "code" and r.status == 400}
    # A second presentation whose answer was lost at the kill may still have
    # reached the server and been committed as a replay (revoking the first
    # token); the client cannot know. Such tokens may be either, but if
    # inactive the store must say they were revoked (checked below).
    presented_codes = Counter(r.key for r in recs if r.op == "code")
    maybe_replayed = {r.key for r in lost if r.op == "code" and presented_codes[r.key] > 1} - replayed
    inactive = [(r, a) for r, a in answers if a.get("active") is not True
                and not (r.op == "code" and r.key in replayed | maybe_replayed)]
    revoked_by_lost_replay = [r for r, a in answers
                              if r.op == "code" and r.key in maybe_replayed and a.get("active") is not True]
    stats["revoked_by_lost_replay"] = len(revoked_by_lost_replay)
    still_active = [(r, a) for r, a in answers if r.op == "code" and r.key in replayed and a != INACTIVE]
    stats["introspected"] = len(answers)
    stats["revoked_by_code_replay"] = len([1 for r, _ in answers if r.op == "code" and r.key in replayed])

    d.stop()
    assert not inactive, f"{len(inactive)} access tokens received with 200 are not active after the crash: " \
                         f"{inactive[:5]}"
    assert not still_active, f"tokens of a replayed code are still active (RFC 6749 §4.1.2): {still_active[:5]}"

    # -- the database, read-only, server stopped
    assert integrity_problems(d) == []
    conn = db_readonly(d)
    try:
        branches = conn.execute(
            "SELECT family_id, COUNT(*) FROM refresh_tokens WHERE consumed_at IS NULL AND revoked_at IS NULL "
            "GROUP BY family_id HAVING COUNT(*) > 1").fetchall()
        assert not branches, f"refresh families with two live branches: {[tuple(b) for b in branches]}"

        def token_row(jti):
            return conn.execute("SELECT kind, client_id, subject, parent_jti FROM tokens WHERE jti = ?",
                                (jti,)).fetchone()

        wrong = []
        for r in issued:
            c = jwt_parts(r.body["access_token"])[1]
            row = token_row(c["jti"])
            if row is None or (row["kind"], row["client_id"], row["subject"]) != ("access", c["client_id"], c["sub"]):
                wrong.append((r, c["jti"], dict(row) if row else None))
            if "id_token" in r.body:
                ic = jwt_parts(r.body["id_token"])[1]
                row = token_row(ic["jti"])
                if row is None or row["kind"] != "id":
                    wrong.append((r, ic["jti"], dict(row) if row else None))
            if r.op == "exchange":
                parent = jwt_parts(r.key)[1]["jti"]
                row = token_row(c["jti"])
                if row is not None and row["parent_jti"] != parent:
                    wrong.append((r, "parent", dict(row)))
        assert not wrong, f"received with 200 but not recorded as such: {wrong[:5]}"
        # an inactive token of a code whose second presentation was lost at the
        # kill was revoked by that replay (RFC 6749 §4.1.2), not lost
        for r in revoked_by_lost_replay:
            row = conn.execute("SELECT revoked_at FROM tokens WHERE jti = ?",
                               (jwt_parts(r.body["access_token"])[1]["jti"],)).fetchone()
            assert row is not None and row["revoked_at"] is not None, (r, dict(row) if row else None)

        # codes accepted are consumed; jtis accepted are remembered
        for code in code_ok:
            row = conn.execute("SELECT consumed_at FROM authorization_codes WHERE code_hash = ?",
                               (sha256_b64url(code),)).fetchone()
            assert row is not None and row["consumed_at"] is not None, code
        for jti in jti_ok:
            row = conn.execute("SELECT 1 FROM used_assertions WHERE client_id = 'jwtsvc' AND jti = ?",
                               (jti,)).fetchone()
            assert row is not None, f"accepted assertion jti {jti} not recorded: it could be replayed"

        # refresh tokens: every one received is recorded in its family; every
        # one presented with a 200 is consumed, its successor the one returned
        for fam in rd.families:
            family_ids = set()
            for rt in fam.received:
                row = conn.execute("SELECT family_id FROM refresh_tokens WHERE token_hash = ?",
                                   (sha256_b64url(rt),)).fetchone()
                assert row is not None, "a refresh token a client received is not recorded"
                family_ids.add(row["family_id"])
            assert len(family_ids) == 1, f"{fam.fid}: received refresh tokens span families {family_ids}"
            live = conn.execute("SELECT token_hash FROM refresh_tokens WHERE family_id = ? AND consumed_at IS NULL "
                                "AND revoked_at IS NULL", (family_ids.pop(),)).fetchall()
            assert [x[0] for x in live] == [sha256_b64url(fam.current)], \
                f"family {fam.fid}: live rows {[x[0] for x in live]}, client holds {sha256_b64url(fam.current)}"
        for r in got:
            if r.op == "refresh" and r.status == 200:
                row = conn.execute("SELECT consumed_at, consumed_by, successor_hash FROM refresh_tokens "
                                   "WHERE token_hash = ?", (sha256_b64url(r.key),)).fetchone()
                assert row["consumed_at"] is not None and row["consumed_by"] == "web", dict(row)
                assert row["successor_hash"] == sha256_b64url(r.body["refresh_token"]), dict(row)
        # the post-restart presentation of the last received token: accepted,
        # and its successor is the one the store chained to it (for a token
        # consumed by a request whose answer the kill swallowed, the same
        # successor as then: no second branch)
        committed_but_lost = 0
        for fid, (rt, status, body) in post_restart.items():
            assert status == 200, f"family {fid}: its last received refresh token was refused after the " \
                                  f"restart: {status} {body}"
            row = conn.execute("SELECT consumed_at, successor_hash FROM refresh_tokens WHERE token_hash = ?",
                               (sha256_b64url(rt),)).fetchone()
            assert row["successor_hash"] == sha256_b64url(body["refresh_token"]), (fid, dict(row))
            if fid in fams_in_flight and row["consumed_at"] is not None and row["consumed_at"] <= rd.kill_time:
                committed_but_lost += 1
        stats["refresh_committed_but_answer_lost"] = committed_but_lost
    finally:
        conn.close()


def test_sigkill_during_load_keeps_single_use_rfc6749_s10_5_rfc9700_s4_14(new_deputy):
    """RFC 6749 §4.1.2 / §10.5 + RFC 6819 §5.2.1.1 (a code is accepted once),
    RFC 6749 §6 / §10.4 + RFC 9700 §4.14.2 (rotation: one live refresh token
    per family, a retry in the grace window gets the same successor), RFC 7523
    §3 item 7 (a jti is accepted once), RFC 7662 §2.2 (a token a client
    received with 200 is active). Three rounds, SIGKILL at 0.8 s, 1.7 s and
    2.6 s into a load of refreshes (some presented twice at once), code
    redemptions (half raced twice), private_key_jwt client credentials (one
    in five raced twice) and token exchanges; restart on the same database
    and keys; then: integrity_check ok; no family with two live branches; no
    code or jti accepted twice; every 200 access token recorded (kind,
    client, subject, parent) and introspecting active; every received refresh
    token recorded in its family; the last one of each family works once
    after the restart and is then the family's only live token."""
    # A grace window longer than any restart on a slow machine: the retries
    # after the restart must fall inside it (semantics as with the default).
    d = new_deputy(settings(DEPUTY_REFRESH_GRACE="30"))
    inst = Install(d)
    inst.setup()
    d.start()
    inst.sign_in_browser("web")
    inst.sign_in_browser("agent-x")
    all_stats = []
    for kill_after in KILL_AFTER:
        if d.proc is None:
            d.start()
        rd = Round(inst, kill_after)
        rd.prepare()
        rd.run_load()
        stats = {"kill_after": kill_after}
        check_round(rd, stats)
        all_stats.append(stats)
    print("crash rounds:", all_stats)
    assert sum(s["in_flight_at_kill"] for s in all_stats) >= 1, "no request was in flight at any kill"


# --------------------------------------------------------------------------
# Management commands during load
# --------------------------------------------------------------------------


def test_management_commands_during_load_never_fail_requests(new_deputy):
    """README ("Management commands may run while the server runs on the same
    database"; "the running server picks up new keys within two seconds")
    with RFC 6749 §5.1 / RFC 7662 §2.2: while client-credentials requests
    (client_secret_basic and private_key_jwt) and introspections run
    continuously, `deputy client add`, `keys rotate`, `delegation allow` and
    `user add` run repeatedly. Every command exits 0, every request answers
    200 (tokens issued, introspection active) — zero non-2xx — and
    afterwards the new clients get tokens and the JWKS publishes every
    rotated key."""
    d = new_deputy(settings())
    key = ClientKey("ES256", kid="mgmt-k1")
    svc = add_client(d, "svc", kind="service", auth="client_secret_basic", grants=("client_credentials",),
                     scopes=("read",), audiences=(API,), redirect_uris=())["client_secret"]
    d.add_client("jwtsvc", "private_key_jwt", key=key, scopes=("read",), audiences=(API,))
    d.start()
    log = Log()
    stop = threading.Event()
    tokens: list[str] = []
    lock = threading.Lock()

    def cc_secret():
        s = requests.Session()
        while not stop.is_set():
            rec = log.call("cc-secret", None, "svc", lambda: s.post(
                d.token_endpoint, data={"grant_type": "client_credentials"}, headers=basic_auth("svc", svc),
                timeout=5))
            if rec.status == 200:
                with lock:
                    tokens.append(rec.body["access_token"])

    def cc_jwt():
        s = requests.Session()
        while not stop.is_set():
            log.call("cc-jwt", None, "jwtsvc", lambda: s.post(
                d.token_endpoint, data=assertion_form(make_assertion(key, "jwtsvc", d.issuer)), timeout=5))

    def introspector():
        s = requests.Session()
        while not stop.is_set():
            with lock:
                tok = tokens[-1] if tokens else None
            if tok is None:
                stop.wait(0.01)
                continue
            log.call("introspect", tok, "svc", lambda: s.post(
                d.url("/introspect"), data={"token": tok}, headers=basic_auth("svc", svc), timeout=5))

    threads = [threading.Thread(target=f, daemon=True) for f in (cc_secret, cc_jwt, introspector)]
    for t in threads:
        t.start()
    cli_results = []
    rotated = []
    t0 = time.monotonic()
    try:
        for i in range(6):
            # Two rounds at least (8 commands), however slow the machine
            # (`keys rotate` makes an RSA-3072 key, `user add` an argon2
            # hash); more while within 6 s.
            if i >= 2 and time.monotonic() - t0 > 6:
                break
            for args, inp in (
                (["client", "add", "--id", f"mgmt-{i}", "--kind", "service", "--auth", "client_secret_basic",
                  "--scope", "read", "--audience", API], None),
                (["keys", "rotate"], None),
                (["delegation", "allow", "--actor", f"mgmt-{i}", "--audience", f"https://t{i}.example",
                  "--scope", "read"], None),
                (["user", "add", "--username", f"user-{i}", "--password-stdin"], f"password-{i}-long\n"),
            ):
                r = d.run(*args, input=inp)
                cli_results.append((args[:2], r.returncode, r.stderr.strip()))
                if args[0] == "keys" and r.returncode == 0:
                    rotated.append(json.loads(r.stdout)["kid"])
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    recs = log.all()
    failed_cli = [c for c in cli_results if c[1] != 0]
    assert not failed_cli, f"management commands failed while the server ran: {failed_cli}"
    assert len(cli_results) >= 8
    by_op = Counter(r.op for r in recs)
    assert by_op["cc-secret"] > 20 and by_op["cc-jwt"] > 20 and by_op["introspect"] > 20, by_op
    failed = [r for r in recs if r.status != 200]
    assert not failed, f"{len(failed)} of {len(recs)} requests failed during management commands: {failed[:10]}"
    inactive = [r for r in recs if r.op == "introspect" and r.body.get("active") is not True]
    assert not inactive, inactive[:5]
    # A client added now works at once; every rotated key is published.
    r = d.run("client", "add", "--id", "mgmt-after", "--kind", "service", "--auth", "client_secret_basic",
              "--scope", "read", "--audience", API)
    assert r.returncode == 0, r.stderr
    sec = json.loads(r.stdout)["client_secret"]
    r = requests.post(d.token_endpoint, data={"grant_type": "client_credentials"},
                      headers=basic_auth("mgmt-after", sec), timeout=5)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 4
    while True:
        kids = {k["kid"] for k in d.jwks()["keys"]}
        if set(rotated) <= kids or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rotated and set(rotated) <= kids, (rotated, kids)
