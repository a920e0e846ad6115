"""Round-2 security fixes, black box: consent bound to the resource (RFC 8707
§2), revoking an actor ends its codes and consents, a truthful audit trail
for refresh retries (RFC 9700 §4.14.2), client removal unlinks the resources
it is, exchange refusals that reveal nothing (RFC 7662 §2.2, RFC 8693
§2.2.2), and a brokered token's trace walking both parents (RFC 8693 §2.1)."""

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import assert_oauth_error, assert_token_ok
from flows import (INACTIVE, REDIRECT_URI, add_client, add_user, allow_delegation, authorize, claims,
                   exchange, introspect_json, pkce_pair, post, redeem, refresh, settings, sign_in)

PW = "correct horse battery staple"
ONE, TWO = "https://one.example", "https://two.example"


def silently(d, session: requests.Session, client_id: str, scope: str, resource: str | None = None) -> dict:
    """`prompt=none` with the browser's session: the redirect's query, with
    the PKCE verifier of the request under "verifier"."""
    verifier, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
              "scope": scope, "state": secrets.token_hex(4), "code_challenge": challenge,
              "code_challenge_method": "S256", "prompt": "none"}
    if resource:
        params["resource"] = resource
    r = session.get(d.url("/authorize"), params=params, allow_redirects=False, timeout=15)
    assert r.status_code == 303, r.text[:300]
    q = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["Location"]).query).items()}
    return {**q, "verifier": verifier}


def test_consent_is_per_resource_and_scope_rfc8707_s2(new_deputy):
    """RFC 8707 §2 / OIDC Core §3.1.2.6: allowing notes:read at API 1 and
    notes:write at API 2 does not cover notes:write at API 1, which the
    person never saw: prompt=none answers consent_required, no code."""
    d = new_deputy(settings())
    add_user(d, "alice", PW)
    add_client(d, "web", audiences=(ONE, TWO))
    d.start()
    s = requests.Session()
    authorize(d, "web", "alice", PW, "openid notes:read", {"resource": ONE}, session=s)
    authorize(d, "web", "alice", PW, "openid notes:write", {"resource": TWO}, session=s)
    assert "code" in silently(d, s, "web", "openid notes:read", ONE)
    assert "code" in silently(d, s, "web", "openid notes:write", TWO)
    for scope, resource in [("openid notes:write", ONE), ("openid notes:read", TWO),
                            ("openid notes:read notes:write", ONE)]:
        q = silently(d, s, "web", scope, resource)
        assert "code" not in q and q.get("error") == "consent_required", (scope, resource, q)


@pytest.mark.parametrize("how", ["api-actor-and-sub", "cli-actor-and-sub", "cli-actor"])
def test_revoking_an_actor_ends_its_codes_and_consent(new_deputy, how):
    """Revoking what an agent can do for a person (`deputy revoke --actor A
    --sub S`, `POST /admin/revoke {"actor", "sub"}`, or `--actor A` alone)
    also ends the agent's unredeemed authorization codes (they redeem into
    invalid_grant with the right client, verifier and redirect_uri) and
    withdraws the person's remembered consent (prompt=none answers
    consent_required), in the same transaction."""
    d = new_deputy(settings())
    alice = add_user(d, "alice", PW)["id"]
    agent = add_client(d, "agent-a", kind="agent", auth="client_secret_basic")
    ops = add_client(d, "ops", kind="service", auth="client_secret_basic", grants=("client_credentials",),
                     scopes=("deputy:admin",), redirect_uris=(), audiences=(d.issuer,))
    d.start()
    s = requests.Session()
    authorize(d, "agent-a", "alice", PW, "openid notes:read", session=s)
    pending = silently(d, s, "agent-a", "openid notes:read")
    assert "code" in pending, pending
    if how == "api-actor-and-sub":
        r = post(d, "/token", "ops", ops["client_secret"], {"grant_type": "client_credentials"})
        admin = assert_token_ok(r)["access_token"]
        r = requests.post(d.url("/admin/revoke"), json={"actor": "agent-a", "sub": alice},
                          headers={"Authorization": f"Bearer {admin}"}, timeout=15)
        assert r.status_code == 200, r.text
    elif how == "cli-actor-and-sub":
        d.cli("revoke", "--actor", "agent-a", f"--sub={alice}")  # an id may begin with "-"
    else:
        d.cli("revoke", "--actor", "agent-a")
    r = redeem(d, "agent-a", pending["code"], pending["verifier"], agent["client_secret"])
    assert_oauth_error(r, 400, "invalid_grant")
    q = silently(d, s, "agent-a", "openid notes:read")
    assert q.get("error") == "consent_required" and "code" not in q, q
    trail = d.cli("audit", "--event", "admin_revoke")
    assert trail[-1]["detail"]["consents_withdrawn"] == 1, trail[-1]


def test_revoked_actors_code_redeems_into_nothing(new_deputy):
    """The code an agent obtained just before `deputy revoke --actor A --sub
    S` is invalid_grant when redeemed with the right client, verifier and
    redirect_uri."""
    d = new_deputy(settings())
    alice = add_user(d, "alice", PW)["id"]
    agent = add_client(d, "agent-a", kind="agent", auth="client_secret_basic")
    d.start()
    code, verifier = authorize(d, "agent-a", "alice", PW, "openid notes:read")
    d.cli("revoke", "--actor", "agent-a", f"--sub={alice}")  # an id may begin with "-"
    r = redeem(d, "agent-a", code, verifier, agent["client_secret"])
    assert_oauth_error(r, 400, "invalid_grant")
    assert d.cli("audit", "--event", "token_issued", "--client", "agent-a") == []


def test_refresh_retry_is_recorded_as_such_rfc9700_s4_14_2(new_deputy):
    """A retry inside the grace window returns the existing successor: the
    trail records refresh_retried (with the access and ID tokens it issued)
    and no token_issued for a refresh token that was not issued."""
    d = new_deputy(settings(DEPUTY_REFRESH_GRACE="30"))
    add_user(d, "alice", PW)
    add_client(d, "web")
    d.start()
    first = sign_in(d, "web", "alice", PW, "openid notes:read")
    second = assert_token_ok(refresh(d, "web", first["refresh_token"]))
    again = assert_token_ok(refresh(d, "web", first["refresh_token"]))
    assert again["refresh_token"] == second["refresh_token"]
    issued = d.cli("audit", "--event", "token_issued", "--client", "web")
    refresh_issued = [e for e in issued if e["detail"]["kind"] == "refresh"]
    assert len(refresh_issued) == 2, refresh_issued  # the sign-in's and the rotation's
    retried = d.cli("audit", "--event", "refresh_retried")
    assert len(retried) == 1, retried
    assert retried[0]["detail"]["issued"] == [claims(again["access_token"])["jti"],
                                              claims(again["id_token"])["jti"]]
    assert retried[0]["detail"]["refresh_token_issued"] is False


def test_removed_client_does_not_stay_linked_to_its_resource(new_deputy):
    """A client removed while it *is* a resource (`resource add --client`) is
    unlinked in the same transaction: a client registered again under the
    same id does not inherit introspection visibility (RFC 7662 §4) for
    tokens addressed to that resource."""
    d = new_deputy(settings())
    api = "https://api.example/"
    caller = add_client(d, "svc", kind="service", auth="client_secret_basic", grants=("client_credentials",),
                        scopes=("read",), redirect_uris=(), audiences=(api,))
    first = add_client(d, "the-api", kind="service", auth="client_secret_basic",
                       grants=("client_credentials",), scopes=(), redirect_uris=(), audiences=())
    d.cli("resource", "add", "--id", api, "--client", "the-api")
    d.start()
    token = assert_token_ok(post(d, "/token", "svc", caller["client_secret"],
                                 {"grant_type": "client_credentials", "scope": "read"}))["access_token"]
    assert introspect_json(d, token, "the-api", first["client_secret"])["active"] is True
    out = d.cli("client", "remove", "the-api")
    assert out["resources_unlinked"] == 1, out
    assert [r["client_id"] for r in d.cli("resource", "list")] == [None]
    again = add_client(d, "the-api", kind="service", auth="client_secret_basic",
                       grants=("client_credentials",), scopes=(), redirect_uris=(), audiences=())
    # Removal revoked what was addressed to it; a token issued afterwards for
    # the resource is active, but the new client is not that resource.
    assert introspect_json(d, token, "svc", caller["client_secret"]) == INACTIVE
    later = assert_token_ok(post(d, "/token", "svc", caller["client_secret"],
                                 {"grant_type": "client_credentials", "scope": "read"}))["access_token"]
    assert introspect_json(d, later, "svc", caller["client_secret"])["active"] is True
    assert introspect_json(d, later, "the-api", again["client_secret"]) == INACTIVE


def test_exchange_refusals_reveal_nothing_rfc8693_s2_2_2(new_deputy):
    """RFC 8693 §2.2.2 with RFC 7662 §2.2: to a caller for whom
    introspection says only {"active": false}, an exchange answers an
    unknown, revoked, expired-looking, foreign or not-entitled subject token
    identically (same status, error and description)."""
    d = new_deputy(settings())
    add_user(d, "alice", PW)
    x = add_client(d, "agent-x", kind="agent", auth="client_secret_basic",
                   grants=("authorization_code", "refresh_token", "token-exchange"))
    y = add_client(d, "agent-y", kind="agent", auth="client_secret_basic", grants=("token-exchange",),
                   redirect_uris=(), scopes=())
    allow_delegation(d, "agent-x", "agent-y", ["notes:read"])
    allow_delegation(d, "agent-y", "https://notes.example", ["notes:read"])
    d.start()
    person = sign_in(d, "agent-x", "alice", PW, "openid notes:read", client_auth=x["client_secret"])
    limited = assert_token_ok(exchange(d, "agent-x", x["client_secret"], person["access_token"],
                                       audience="agent-y", may_act="agent-x"))["access_token"]
    to_revoke = assert_token_ok(exchange(d, "agent-x", x["client_secret"], person["access_token"],
                                         audience="agent-y"))["access_token"]
    assert post(d, "/revoke", "agent-x", x["client_secret"], {"token": to_revoke}).status_code == 200
    h, p, sig = person["access_token"].split(".")
    forged = f"{h}.{p}.{sig[:-4]}AAAA"
    answers = {
        "garbage": exchange(d, "agent-y", y["client_secret"], "not-a-token", audience="https://notes.example"),
        "bad signature": exchange(d, "agent-y", y["client_secret"], forged, audience="https://notes.example"),
        "revoked": exchange(d, "agent-y", y["client_secret"], to_revoke, audience="https://notes.example"),
        "foreign": exchange(d, "agent-y", y["client_secret"], person["access_token"],
                            audience="https://notes.example"),
        "not entitled (may_act)": exchange(d, "agent-y", y["client_secret"], limited,
                                           audience="https://notes.example"),
    }
    shapes = {k: (r.status_code, r.json()) for k, r in answers.items()}
    first = shapes["garbage"]
    assert first[0] == 400 and first[1]["error"] == "invalid_request", first
    for what, shape in shapes.items():
        assert shape == first, (what, shape, first)
    reasons = [e["reason"] for e in d.cli("audit", "--event", "token_exchange") if e["outcome"] == "refused"]
    assert any("revoked or unknown" in r for r in reasons), reasons
    assert any("neither issued nor addressed" in r for r in reasons), reasons
    assert any("may_act" in r for r in reasons), reasons


def test_trace_walks_both_parents_of_a_brokered_token(new_deputy):
    """RFC 8693 §2.1: a token a broker obtained with the actor's own token
    (actor_token) hangs from both; `deputy trace` lists both among its
    ancestors, and revoking the actor token revokes it."""
    d = new_deputy(settings())
    add_user(d, "alice", PW)
    web = add_client(d, "web", auth="client_secret_basic", audiences=("https://svc-s.example",))
    svc = add_client(d, "svc-s", kind="agent", auth="client_secret_basic", grants=("client_credentials",),
                     scopes=("notes:read",), redirect_uris=(), audiences=("https://svc-s.example",))
    broker = add_client(d, "broker", kind="service", auth="client_secret_basic", grants=("token-exchange",),
                        redirect_uris=(), scopes=())
    allow_delegation(d, "svc-s", "https://notes.example", ["notes:read"], broker="broker")
    # The person's token is addressed to svc-s (through the resource it is).
    d.cli("resource", "add", "--id", "https://svc-s.example", "--client", "svc-s")
    d.start()
    person = sign_in(d, "web", "alice", PW, "openid notes:read", client_auth=web["client_secret"],
                     extra_params={"resource": "https://svc-s.example"})
    own = assert_token_ok(post(d, "/token", "svc-s", svc["client_secret"],
                               {"grant_type": "client_credentials", "resource": "https://svc-s.example"}))
    r = exchange(d, "broker", broker["client_secret"], person["access_token"], audience="https://notes.example",
                 actor_token=own["access_token"],
                 actor_token_type="urn:ietf:params:oauth:token-type:access_token")
    brokered = assert_token_ok(r)["access_token"]
    trace = d.cli("trace", claims(brokered)["jti"])
    ancestors = [t["jti"] for t in trace["ancestors"]]
    assert ancestors[:2] == [claims(person["access_token"])["jti"], claims(own["access_token"])["jti"]], trace
