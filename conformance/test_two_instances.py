"""Scale-out: two `deputy serve` instances on one PostgreSQL schema and one
key-encryption key, both with the same issuer, behind a round-robin proxy
(nginx, proxy/nginx.py), with `trusted_proxies = 127.0.0.1`. Every request
may land on the other instance, so everything a flow carries from one
request to the next must be in the database: interactions and login
sessions, consumed codes and refresh tokens, spent assertion jtis,
revocations, signing keys.

PostgreSQL only (DEPUTY_CONFORMANCE_POSTGRES): skipped otherwise, since two
processes on one SQLite file is not a supported deployment.

The proxy serves each request from exactly one instance and never retries
on the other; it names the instance in `X-Upstream`, so each test checks
that consecutive steps really were served by different instances."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
import requests

from conftest import (PG_BASE, ClientKey, Deputy, assert_oauth_error, assert_token_ok, assertion_form, basic_auth,
                      free_port, jwt_parts, make_assertion, new_pg_schema, psql, write_kek)
from flows import (INACTIVE, ProofKey, add_client, add_user, allow_delegation, authorize, claims, dpop,
                   exchange, introspect, introspect_json, redeem, refresh, revoke, settings, verify_jwcrypto,
                   verify_pyjwt)
from proxy.nginx import Nginx

pytestmark = pytest.mark.skipif(PG_BASE is None, reason="PostgreSQL only: set DEPUTY_CONFORMANCE_POSTGRES")

PW = "correct horse battery staple"
API = "https://api.example/"
NOTES = "https://notes.example"
X, Y, Z = "agent-x", "agent-y", "agent-z"
AGENT_GRANTS = ("authorization_code", "refresh_token", "token-exchange")
SETTINGS = settings(DEPUTY_TRUSTED_PROXIES="127.0.0.1")


class Pair:
    """Instances `a` and `b` (one schema, one KEK, issuer = the proxy) and
    the proxy. `a.url()` is the proxy's; `a.direct`, `b.direct` the instances'."""

    def __init__(self, root, n: int = 2):
        self.proxy_port = free_port()
        issuer = f"http://127.0.0.1:{self.proxy_port}"
        schema, kek = new_pg_schema(), write_kek()
        self.instances = [Deputy(root / f"i{i}", SETTINGS, schema=schema, kek_file=kek, issuer=issuer)
                          for i in range(n)]
        self.a, self.b = self.instances[0], self.instances[1]
        self.proxy = Nginx(root / "nginx", self.proxy_port, [d.port for d in self.instances])
        self.names = {f"127.0.0.1:{d.port}": f"i{i}" for i, d in enumerate(self.instances)}

    def start(self):
        try:
            for d in self.instances:
                d.spawn()
            for d in self.instances:
                d.wait_ready()
            self.proxy.start()
        except BaseException:
            self.stop()  # nothing left running when the fixture fails
            raise
        return self

    def stop(self):
        self.proxy.stop()
        for d in self.instances:
            d.stop()

    def served_by(self, r: requests.Response) -> str:
        return self.names[r.headers["X-Upstream"]]

    def served_since(self, mark: int, at_least: int = 0):
        return [(m, p, s, self.names[u]) for m, p, s, u in self.proxy.served_since(mark, at_least)]


@pytest.fixture(scope="module")
def pair(module_dir):
    p = Pair(module_dir)
    d = p.a
    add_user(d, "alice", PW)
    add_user(d, "bob", PW)
    add_user(d, "carol", PW)
    c = {
        "web": add_client(d, "web"),
        X: add_client(d, X, kind="agent", auth="client_secret_basic", grants=AGENT_GRANTS),
        Y: add_client(d, Y, kind="agent", auth="client_secret_basic", grants=("token-exchange",),
                      redirect_uris=(), scopes=()),
        Z: add_client(d, Z, kind="agent", auth="client_secret_basic", grants=("token-exchange",),
                      redirect_uris=(), scopes=()),
        "svc": d.add_client("svc", "client_secret_basic", audiences=(API,)),
    }
    p.key = ClientKey("ES256", kid="pair-k1")
    d.add_client("jwtsvc", "private_key_jwt", key=p.key, audiences=(API,))
    allow_delegation(d, X, Y, ["notes:read", "notes:write"], max_lifetime=300, max_depth=1)
    allow_delegation(d, Y, Z, ["notes:read"], max_lifetime=200, max_depth=2)
    allow_delegation(d, Z, NOTES, ["notes:read"], max_lifetime=100, max_depth=3)
    p.c = c
    p.start()
    yield p
    p.stop()


@pytest.fixture(autouse=True)
def _show_logs(request, pair):
    """A failing test shows both instances' logs (conftest's report hook)."""
    request.node._deputies = list(pair.instances)
    yield


def secret(p: Pair, client_id: str) -> str:
    return p.c[client_id]["client_secret"]


def alternating(steps: list[str]) -> bool:
    return all(x != y for x, y in zip(steps, steps[1:]))


# ---------------------------------------------------------------- a person's sign-in


def test_sign_in_across_instances_authorize_login_consent_token(pair):
    """RFC 6749 §4.1 + OIDC Core §3.1 across instances: /authorize on one,
    /login on the other, /consent back on the first, the code redeemed on
    the second, and once more shifted by one so every step is served by
    both instances over the two runs: the interaction, the browser binding
    (CSRF), the login session and the code live in the database. The tokens
    verify against either instance's /jwks, and /userinfo answers on both."""
    p = pair
    seen: dict[str, set] = {}
    for run, user in enumerate(("alice", "carol")):
        if run == 1:
            requests.get(p.a.url("/healthz"), timeout=5)  # shift the rotation by one
        mark = p.proxy.log_mark()
        browser = requests.Session()
        code, verifier = authorize(p.a, "web", user, PW, "openid notes:read", session=browser)
        r = redeem(p.a, "web", code, verifier)
        body = assert_token_ok(r)
        steps = p.served_since(mark, 4)
        assert [(m, path, s) for m, path, s, _ in steps] == [
            ("GET", "/authorize", 200), ("POST", "/login", 200), ("POST", "/consent", 303),
            ("POST", "/token", 200)], steps
        assert alternating([who for *_, who in steps]), steps
        for m, path, _, who in steps:
            seen.setdefault(path, set()).add(who)
        for d in p.instances:
            keys = requests.get(d.direct + "/jwks", timeout=5).json()
            kid = jwt_parts(body["id_token"])[0]["kid"]
            assert kid in {k["kid"] for k in keys["keys"]}
        verify_jwcrypto(p.a, body["access_token"])
        verify_jwcrypto(p.a, body["id_token"], typ=None)
        assert claims(body["id_token"])["iss"] == p.a.issuer
        who = set()
        for _ in range(2):
            u = requests.get(p.a.url("/userinfo"), headers={"Authorization": f"Bearer {body['access_token']}"},
                             timeout=5)
            assert u.status_code == 200, u.text
            assert u.json()["sub"] == claims(body["access_token"])["sub"]
            who.add(p.served_by(u))
        assert who == {"i0", "i1"}
    assert all(s == {"i0", "i1"} for s in seen.values()), seen


def test_remembered_consent_and_session_across_instances(pair):
    """A second sign-in in the same browser: the login session made on one
    instance and the consent remembered there are honoured by the other
    (no login form, no consent page: straight back with a code)."""
    p = pair
    browser = requests.Session()
    authorize(p.a, "web", "bob", PW, "openid notes:read", session=browser)
    for _ in range(2):
        mark = p.proxy.log_mark()
        code, verifier = authorize(p.a, "web", "bob", PW, "openid notes:read", session=browser)
        steps = p.served_since(mark, 1)
        assert [(m, path, s) for m, path, s, _ in steps] == [("GET", "/authorize", 303)], steps
        assert_token_ok(redeem(p.a, "web", code, verifier))


# ---------------------------------------------------------------- services


def test_assertion_replayed_on_the_other_instance_is_refused_rfc7523_s3(pair):
    """RFC 7523 §3 item 7: a client assertion accepted by one instance is
    refused when replayed to the other (the spent jti is in the database),
    in both directions."""
    p = pair
    served = []
    for i in range(4):
        if i % 2:
            requests.get(p.a.url("/healthz"), timeout=5)  # shift which instance sees it first
        form = assertion_form(make_assertion(p.key, "jwtsvc", p.a.issuer))
        first = requests.post(p.a.token_endpoint, data=form, timeout=10)
        assert_token_ok(first)
        again = requests.post(p.a.token_endpoint, data=form, timeout=10)
        assert_oauth_error(again, 401, "invalid_client")
        assert p.served_by(first) != p.served_by(again)
        served.append(p.served_by(first))
    assert set(served) == {"i0", "i1"}, served


def test_dpop_proof_replayed_on_the_other_instance_is_refused_rfc9449_s11_1(pair):
    """RFC 9449 §11.1: a DPoP proof accepted by one instance (a bound token
    issued) is refused with `invalid_dpop_proof` when replayed to the other
    (the spent proof is in the database), in both directions."""
    p = pair
    served = []
    for i in range(4):
        if i % 2:
            requests.get(p.a.url("/healthz"), timeout=5)  # shift which instance sees it first
        key = ProofKey()
        headers = {**basic_auth("svc", secret(p, "svc")), **dpop(key.proof("POST", p.a.token_endpoint))}
        first = requests.post(p.a.token_endpoint, data={"grant_type": "client_credentials"}, headers=headers,
                              timeout=10)
        assert first.status_code == 200, first.text
        assert first.json()["token_type"] == "DPoP"
        assert claims(first.json()["access_token"])["cnf"] == {"jkt": key.jkt}
        again = requests.post(p.a.token_endpoint, data={"grant_type": "client_credentials"}, headers=headers,
                              timeout=10)
        assert_oauth_error(again, 400, "invalid_dpop_proof")
        assert p.served_by(first) != p.served_by(again)
        served.append(p.served_by(first))
    assert set(served) == {"i0", "i1"}, served


def test_revocation_through_one_instance_is_seen_by_the_other_at_once_rfc7009_rfc7662(pair):
    """RFC 7009 §2.2 / RFC 7662 §2.2: a token revoked through one instance
    introspects as inactive through the other on the very next request
    (introspection reads the database, no cache)."""
    p = pair
    directions = Counter()
    hdr = basic_auth("svc", secret(p, "svc"))
    for i in range(6):
        if i % 2:
            requests.get(p.a.url("/healthz"), timeout=5)  # shift which instance revokes
        tok = assert_token_ok(p.a.token({"grant_type": "client_credentials"}, headers=hdr))["access_token"]
        active = requests.post(p.a.url("/introspect"), data={"token": tok}, headers=hdr, timeout=5)
        assert active.json()["active"] is True, active.text
        rv = requests.post(p.a.url("/revoke"), data={"token": tok}, headers=hdr, timeout=5)
        assert rv.status_code == 200, rv.text
        seen = requests.post(p.a.url("/introspect"), data={"token": tok}, headers=hdr, timeout=5)
        assert seen.status_code == 200 and seen.json() == INACTIVE, seen.text
        assert p.served_by(rv) != p.served_by(seen)
        directions[(p.served_by(rv), p.served_by(seen))] += 1
    assert set(directions) == {("i0", "i1"), ("i1", "i0")}, directions


# ---------------------------------------------------------------- refresh race


def test_refresh_race_across_instances_one_successor_rfc9700_s4_14_2(pair):
    """README "Refresh rotation and the grace window" / RFC 9700 §4.14.2: 20
    concurrent presentations of one refresh token, spread over both
    instances: every answer is 200 with the same successor (the grace
    window's same outcome, never a new branch), never a 5xx; the family
    then has exactly one live token (the successor), which rotates once;
    the original cannot start a second branch."""
    p = pair
    code, verifier = authorize(p.a, "web", "alice", PW, "openid notes:read")
    rt = assert_token_ok(redeem(p.a, "web", code, verifier))["refresh_token"]
    n = 20
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i):
        barrier.wait()
        try:
            results[i] = refresh(p.a, "web", rt)
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, requests.Response) for r in results), results
    by = Counter(p.served_by(r) for r in results)
    assert set(by) == {"i0", "i1"}, by
    statuses = [(p.served_by(r), r.status_code, r.text[:160]) for r in results if r.status_code != 200]
    assert not statuses, statuses
    successors = {r.json()["refresh_token"] for r in results}
    assert len(successors) == 1, f"{len(successors)} successors: the family split"
    (succ,) = successors
    assert succ != rt
    fam = family_of(p, rt)
    assert live_tokens(p, fam) == [sha256_b64url(succ)]
    t2 = assert_token_ok(refresh(p.a, "web", succ))
    assert_oauth_error(refresh(p.a, "web", rt), 400, "invalid_grant")
    assert_oauth_error(refresh(p.a, "web", t2["refresh_token"]), 400, "invalid_grant")
    assert live_tokens(p, fam) == []


def sha256_b64url(s: str) -> str:
    import base64
    import hashlib

    return base64.urlsafe_b64encode(hashlib.sha256(s.encode()).digest()).rstrip(b"=").decode()


def family_of(p: Pair, rt: str) -> str:
    fam = psql(str(p.a.database), f"SELECT family_id FROM refresh_tokens WHERE token_hash = '{sha256_b64url(rt)}'")
    assert fam, "refresh token not recorded"
    return fam


def live_tokens(p: Pair, family: str) -> list[str]:
    out = psql(str(p.a.database), "SELECT token_hash FROM refresh_tokens WHERE consumed_at IS NULL "
                                  f"AND revoked_at IS NULL AND family_id = '{family}'")
    return out.split()


# ---------------------------------------------------------------- delegation


def test_three_hop_exchange_chain_across_instances_rfc8693_s4_1(pair):
    """RFC 8693 §2.2.1 / §4.1: person → X → Y → Z → notes API, each hop on
    the other instance than the one before; `act` nests the whole chain,
    scope and lifetime only narrow; the last token introspects active on
    both instances, and revoking the person's token through one instance
    makes every descendant inactive on both (RFC 7009 §2.1 cascade)."""
    p = pair
    code, verifier = authorize(p.a, X, "alice", PW, "openid notes:read notes:write")
    person = assert_token_ok(redeem(p.a, X, code, verifier, client_auth=secret(p, X)))
    hops = [(X, person["access_token"], {"audience": Y, "scope": "notes:read notes:write"}),
            (Y, None, {"audience": Z}), (Z, None, {"resource": NOTES})]
    tokens, served = [person["access_token"]], []
    for client, _, params in hops:
        r = exchange(p.a, client, secret(p, client), tokens[-1], **params)
        body = assert_token_ok(r)
        assert "refresh_token" not in body
        tokens.append(body["access_token"])
        served.append(p.served_by(r))
    assert alternating(served), served
    c = [claims(t) for t in tokens]
    assert c[3]["act"] == {"sub": Z, "act": {"sub": Y, "act": {"sub": X}}}, c[3]
    assert [x["aud"] for x in c[1:]] == [Y, Z, NOTES]
    assert c[3]["scope"] == "notes:read" and c[3]["sub"] == c[0]["sub"]
    assert c[0]["exp"] >= c[1]["exp"] >= c[2]["exp"] >= c[3]["exp"]
    verify_pyjwt(p.a, tokens[3], audience=NOTES)
    who = set()
    for _ in range(2):
        r = introspect(p.a, tokens[3], Z, secret(p, Z))
        assert r.status_code == 200 and r.json()["active"] is True, r.text
        assert r.json()["act"] == c[3]["act"]
        who.add(p.served_by(r))
    assert who == {"i0", "i1"}
    rv = revoke(p.a, tokens[0], X, secret(p, X))
    assert rv.status_code == 200, rv.text
    for _ in range(2):
        for client, tok in ((X, tokens[1]), (Y, tokens[2]), (Z, tokens[3])):
            assert introspect_json(p.a, tok, client, secret(p, client)) == INACTIVE, (client, claims(tok)["jti"])


# ---------------------------------------------------------------- signing keys


def jwks_of(d: Deputy) -> dict:
    r = requests.get(d.direct + "/jwks", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def canonical(jwks: dict) -> str:
    return json.dumps(sorted(jwks["keys"], key=lambda k: k["kid"]), sort_keys=True)


def test_key_rotation_from_the_cli_is_published_by_both_instances(pair):
    """README (Keys): `deputy keys rotate` on the shared database; both
    instances publish the new key in /jwks within about 3 s, and their JWKS
    are then identical; tokens from either instance verify with either
    instance's JWKS."""
    p = pair
    before = {k["kid"] for k in jwks_of(p.a)["keys"]}
    assert canonical(jwks_of(p.a)) == canonical(jwks_of(p.b))
    rot = p.a.cli("keys", "rotate")
    kid = rot["kid"]
    assert kid not in before
    t0 = time.monotonic()
    deadline = t0 + 3.5
    published: dict[str, float] = {}
    while len(published) < len(p.instances) and time.monotonic() < deadline:
        for d in p.instances:
            if d.port not in published and kid in {k["kid"] for k in jwks_of(d)["keys"]}:
                published[d.port] = time.monotonic() - t0
        time.sleep(0.1)
    assert len(published) == len(p.instances), f"new key {kid} published by {published} within 3.5 s"
    print("rotated key published after (s):", published)
    assert canonical(jwks_of(p.a)) == canonical(jwks_of(p.b))
    # The rotation's key generation: its P-256 key and its RSA key.
    assert {k["kid"] for k in jwks_of(p.a)["keys"]} == before | {kid, rot["rsa_kid"]}
    hdr = basic_auth("svc", secret(p, "svc"))
    for _ in range(2):
        r = p.a.token({"grant_type": "client_credentials"}, headers=hdr)
        tok = assert_token_ok(r)["access_token"]
        for d in p.instances:
            keys = {k["kid"]: k for k in jwks_of(d)["keys"]}
            assert jwt_parts(tok)[0]["kid"] in keys


@pytest.mark.parametrize("round_", range(3))
def test_instances_starting_together_on_an_empty_schema_make_one_first_key(tmp_path, round_):
    """Three instances started at the same moment on an EMPTY schema (one
    KEK): the migration runs once, exactly one first key generation is
    created (`signing_keys`: one P-256 key and one RSA key naming it) and all
    three publish it."""
    schema, kek = new_pg_schema(), write_kek()
    ds = [Deputy(tmp_path / f"n{i}", SETTINGS, schema=schema, kek_file=kek) for i in range(3)]
    try:
        for d in ds:
            d.spawn()
        for d in ds:
            d.wait_ready(timeout=30)
        url = str(ds[0].database)
        assert psql(url, "SELECT count(*) FROM signing_keys") == "2"
        kid = psql(url, "SELECT kid FROM signing_keys WHERE alg = 'ES256'")
        rsa_kid = psql(url, f"SELECT kid FROM signing_keys WHERE alg = 'RS256' AND ec_kid = '{kid}'")
        assert rsa_kid
        for d in ds:
            assert [k["kid"] for k in jwks_of(d)["keys"]] == [kid, rsa_kid], d.log_tail()
    finally:
        for d in ds:
            d.stop()


def test_serve_without_a_usable_key_file_refuses_and_writes_nothing(tmp_path):
    """Issue 13: without the key-encryption key deputy refuses to start on
    PostgreSQL with one line naming the setting; a malformed key file is a
    clear error too. Either way the empty schema stays empty (the refusal
    comes before the migration)."""
    d = Deputy(tmp_path / "nokek", SETTINGS)
    bad = tmp_path / "bad.kek"
    bad.write_text("not a key\n")
    bad.chmod(0o600)
    for extra, says in (({"DEPUTY_KEY_ENCRYPTION_KEY_FILE": ""}, "required when `database` is a PostgreSQL URL"),
                        ({"DEPUTY_KEY_ENCRYPTION_KEY_FILE": str(bad)}, str(bad))):
        r = d.run("serve", "--bind", f"127.0.0.1:{d.port}", env_extra=extra)
        assert r.returncode == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert "setting `key_encryption_key_file`" in lines[0] and says in lines[0], lines[0]
        assert d.pg_tables() == [], "a refused start-up must not write the schema"
