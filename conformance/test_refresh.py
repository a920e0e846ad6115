"""Refresh tokens: RFC 6749 §6 (refresh grant, scope narrowing, client
binding), RFC 9700 §4.14.2 (rotation with reuse detection, family
revocation), RFC 6749 §10.10 (token entropy), RFC 7009 §2.1 (revoking a
refresh token), OpenID Connect Core §12.2 (ID token on refresh).

Grace window (deputy setting `refresh_grace`, default 5 s, 0 = strict): the
same client re-presenting the token it just rotated, while the successor is
unused, gets the same successor back; anything else is reuse."""

import re
import threading
import time

import pytest

from conftest import Deputy, assert_oauth_error, assert_token_ok
from flows import (INACTIVE, add_client, add_user, claims, introspect_json, refresh, revoke, settings,
                   sign_in, verify_jwcrypto)

PW = "correct horse battery staple"
SCOPE = "openid notes:read notes:write"
B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def setup_install(d: Deputy, users=("alice",)) -> dict:
    for u in users:
        add_user(d, u, PW)
    c = {}
    c["web"] = add_client(d, "web")                       # public app
    c["web2"] = add_client(d, "web2")                     # another public app
    c["conf"] = add_client(d, "conf", auth="client_secret_basic")
    c["post"] = add_client(d, "post", auth="client_secret_post")
    return c


@pytest.fixture(scope="module")
def env(module_dir):
    """Default settings: refresh_grace 5 s."""
    d = Deputy(module_dir / "default", settings())
    c = setup_install(d, users=("alice", "bob", "carol", "dave", "erin"))
    d.start()
    yield d, c
    d.stop()


def conf_auth(c):
    return c["conf"]["client_secret"]


def rotate(d, client_id, rt, auth=None, **extra) -> dict:
    return assert_token_ok(refresh(d, client_id, rt, auth, **extra))


def assert_invalid_grant(r):
    assert_oauth_error(r, 400, "invalid_grant")


# ---------------------------------------------------------------- shape


def test_refresh_tokens_are_opaque_high_entropy_rfc6749_s10_10(env):
    """RFC 6749 §10.10 / §1.5: refresh tokens are opaque (not a JWT) and carry
    at least 256 bits (>= 43 base64url characters); every rotation yields a
    new, unique one."""
    d, c = env
    t = sign_in(d, "web", "alice", PW, SCOPE)
    seen = set()
    rt = t["refresh_token"]
    for _ in range(3):
        assert isinstance(rt, str) and B64URL.match(rt), rt
        assert len(rt) >= 43, rt
        assert "." not in rt
        assert rt not in seen
        seen.add(rt)
        rt = rotate(d, "web", rt)["refresh_token"]


def test_rotation_issues_new_refresh_and_access_token_rfc9700_s4_14_2(env):
    """RFC 9700 §4.14.2 / RFC 6749 §6: a refresh returns a new access token
    and a NEW refresh token; the access token keeps sub, client_id, scope,
    auth_time of the grant."""
    d, c = env
    t0 = sign_in(d, "web", "alice", PW, SCOPE)
    t1 = rotate(d, "web", t0["refresh_token"])
    assert t1["refresh_token"] != t0["refresh_token"]
    assert t1["access_token"] != t0["access_token"]
    a0, a1 = claims(t0["access_token"]), claims(t1["access_token"])
    assert a1["jti"] != a0["jti"]
    for k in ("iss", "sub", "aud", "client_id", "auth_time"):
        assert a1[k] == a0[k], k
    assert set(a1["scope"].split()) == set(SCOPE.split())
    assert t1["expires_in"] == 300
    assert t1["scope"].split() and set(t1["scope"].split()) == set(SCOPE.split())


def test_refresh_for_another_resource_is_invalid_target_rfc8707_s2_2(env):
    """RFC 8707 §2.2: `resource` in a refresh request names the resource the
    new access token is for; the family was granted for deputy itself, so
    another resource is 400 invalid_target and the token is not consumed (it
    still rotates afterwards, also when the granted resource is named)."""
    d, c = env
    t0 = sign_in(d, "web", "carol", PW, SCOPE)
    aud = claims(t0["access_token"])["aud"]
    r = refresh(d, "web", t0["refresh_token"], None, resource="https://evil.example")
    assert_oauth_error(r, 400, "invalid_target")
    t1 = rotate(d, "web", t0["refresh_token"], resource=aud)
    assert claims(t1["access_token"])["aud"] == aud


# ---------------------------------------------------------------- reuse


def test_reuse_of_consumed_token_revokes_family_rfc9700_s4_14_2(env):
    """RFC 9700 §4.14.2: presenting a refresh token that was already rotated
    (its successor has been used, so no grace retry applies) is reuse:
    400 invalid_grant and the whole family is revoked — the newest refresh
    token fails and every access token of the family introspects inactive."""
    d, c = env
    auth = conf_auth(c)
    t0 = sign_in(d, "conf", "alice", PW, SCOPE, client_auth=auth)
    t1 = rotate(d, "conf", t0["refresh_token"], auth)
    t2 = rotate(d, "conf", t1["refresh_token"], auth)
    for t in (t0, t1, t2):
        assert introspect_json(d, t["access_token"], "conf", auth)["active"] is True
    assert_invalid_grant(refresh(d, "conf", t0["refresh_token"], auth))
    # The family is gone: the live successor, and every access token.
    assert_invalid_grant(refresh(d, "conf", t2["refresh_token"], auth))
    for t in (t0, t1, t2):
        assert introspect_json(d, t["access_token"], "conf", auth) == INACTIVE
    assert introspect_json(d, t2["refresh_token"], "conf", auth) == INACTIVE


def test_grace_retry_with_default_window_returns_same_successor(env):
    """deputy's grace window (default 5 s): the same client re-presenting the
    just-rotated token while the successor is unused gets 200 with the SAME
    successor refresh token and a new access token; the successor then
    rotates normally."""
    d, c = env
    t0 = sign_in(d, "web", "alice", PW, SCOPE)
    t1 = rotate(d, "web", t0["refresh_token"])
    again = rotate(d, "web", t0["refresh_token"])
    assert again["refresh_token"] == t1["refresh_token"]
    assert claims(again["access_token"])["jti"] != claims(t1["access_token"])["jti"]
    t2 = rotate(d, "web", t1["refresh_token"])
    assert t2["refresh_token"] not in (t0["refresh_token"], t1["refresh_token"])


def test_grace_retry_after_successor_used_is_reuse_rfc9700_s4_14_2(env):
    """Within the window but after the successor was used, re-presenting the
    old token is reuse: 400 invalid_grant and the family (including the
    successor's successor) is revoked."""
    d, c = env
    t0 = sign_in(d, "web", "bob", PW, SCOPE)
    t1 = rotate(d, "web", t0["refresh_token"])
    t2 = rotate(d, "web", t1["refresh_token"])
    assert_invalid_grant(refresh(d, "web", t0["refresh_token"]))
    assert_invalid_grant(refresh(d, "web", t2["refresh_token"]))


def test_consumed_token_from_another_client_is_reuse_rfc9700_s4_14_2(env):
    """A consumed refresh token presented by ANOTHER client (even within the
    grace window) is reuse: 400 invalid_grant, and the family is revoked, so
    the rightful client's successor fails too."""
    d, c = env
    t0 = sign_in(d, "web", "carol", PW, SCOPE)
    t1 = rotate(d, "web", t0["refresh_token"])
    assert_invalid_grant(refresh(d, "web2", t0["refresh_token"]))
    assert_invalid_grant(refresh(d, "web", t1["refresh_token"]))


def test_token_of_another_client_is_invalid_grant_rfc6749_s6(env):
    """RFC 6749 §6 / §10.4: the refresh token is bound to the client it was
    issued to; client B presenting client A's live token gets 400
    invalid_grant (public B and confidential B alike), and gets no tokens."""
    d, c = env
    t0 = sign_in(d, "web", "alice", PW, SCOPE)
    assert_invalid_grant(refresh(d, "web2", t0["refresh_token"]))
    assert_invalid_grant(refresh(d, "conf", t0["refresh_token"], conf_auth(c)))
    t1 = sign_in(d, "conf", "alice", PW, SCOPE, client_auth=conf_auth(c))
    assert_invalid_grant(refresh(d, "web", t1["refresh_token"]))
    assert_invalid_grant(refresh(d, "post", t1["refresh_token"], ("post", c["post"]["client_secret"])))


def test_unknown_refresh_token_is_invalid_grant_rfc6749_s5_2(env):
    """RFC 6749 §5.2: an invalid refresh token is 400 invalid_grant."""
    d, c = env
    assert_invalid_grant(refresh(d, "web", "A" * 43))
    assert_invalid_grant(refresh(d, "web", "not-a-token"))


# ---------------------------------------------------------------- concurrency


def test_parallel_refresh_has_at_most_one_live_branch_rfc9700_s4_14_2(env):
    """RFC 9700 §4.14.2 under concurrency: 20 simultaneous refreshes with one
    token never 5xx, and every 200 carries the same successor (one branch).
    That successor then rotates once; the original cannot start a second
    branch."""
    d, c = env
    t0 = sign_in(d, "web", "dave", PW, SCOPE)
    rt = t0["refresh_token"]
    barrier = threading.Barrier(20)
    results = [None] * 20

    def worker(i):
        barrier.wait()
        try:
            results[i] = refresh(d, "web", rt)
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert all(not isinstance(r, Exception) for r in results), results
    statuses = [r.status_code for r in results]
    assert all(s < 500 for s in statuses), statuses
    assert all(s == 200 for s in statuses), [(r.status_code, r.text[:200]) for r in results]
    successors = {r.json()["refresh_token"] for r in results}
    assert len(successors) == 1, successors
    (succ,) = successors
    assert succ != rt
    # The one branch works once ...
    t2 = rotate(d, "web", succ)
    # ... and the original cannot start another one.
    assert_invalid_grant(refresh(d, "web", rt))
    assert_invalid_grant(refresh(d, "web", t2["refresh_token"]))


# ---------------------------------------------------------------- grace edges


def test_grace_window_edges_rfc9700_s4_14_2(new_deputy):
    """DEPUTY_REFRESH_GRACE=2: re-presenting at once → 200 with the same
    successor; re-presenting 3 s after the rotation → 400 invalid_grant and
    the family revoked (the unused successor fails)."""
    d = new_deputy(settings(DEPUTY_REFRESH_GRACE="2"))
    setup_install(d)
    d.start()
    t0 = sign_in(d, "web", "alice", PW, SCOPE)
    t1 = rotate(d, "web", t0["refresh_token"])
    again = rotate(d, "web", t0["refresh_token"])
    assert again["refresh_token"] == t1["refresh_token"]
    time.sleep(3.0)
    assert_invalid_grant(refresh(d, "web", t0["refresh_token"]))
    assert_invalid_grant(refresh(d, "web", t1["refresh_token"]))


def test_strict_mode_has_no_grace_rfc9700_s4_14_2(new_deputy):
    """DEPUTY_REFRESH_GRACE=0 is strict: re-presenting a rotated token even
    immediately is reuse — 400 invalid_grant and the successor is revoked."""
    d = new_deputy(settings(DEPUTY_REFRESH_GRACE="0"))
    setup_install(d)
    d.start()
    t0 = sign_in(d, "web", "alice", PW, SCOPE)
    t1 = rotate(d, "web", t0["refresh_token"])
    assert_invalid_grant(refresh(d, "web", t0["refresh_token"]))
    assert_invalid_grant(refresh(d, "web", t1["refresh_token"]))


# ---------------------------------------------------------------- restart


def test_reuse_detected_after_restart_rfc9700_s4_14_2(new_deputy):
    """Rotation state is durable: rotate twice, restart the server on the
    same database, present the first token → 400 invalid_grant and the family
    is revoked (the newest token fails)."""
    d = new_deputy(settings())
    c = setup_install(d)
    d.start()
    auth = conf_auth(c)
    t0 = sign_in(d, "conf", "alice", PW, SCOPE, client_auth=auth)
    t1 = rotate(d, "conf", t0["refresh_token"], auth)
    t2 = rotate(d, "conf", t1["refresh_token"], auth)
    d.restart()
    assert_invalid_grant(refresh(d, "conf", t0["refresh_token"], auth))
    assert_invalid_grant(refresh(d, "conf", t2["refresh_token"], auth))
    assert introspect_json(d, t2["access_token"], "conf", auth) == INACTIVE


def test_grace_retry_survives_restart(new_deputy):
    """The grace retry is durable too: rotate, restart, re-present at once →
    the same successor (not a second branch)."""
    d = new_deputy(settings())
    setup_install(d)
    d.start()
    t0 = sign_in(d, "web", "alice", PW, SCOPE)
    t1 = rotate(d, "web", t0["refresh_token"])
    d.restart()
    again = rotate(d, "web", t0["refresh_token"])
    assert again["refresh_token"] == t1["refresh_token"]


# ---------------------------------------------------------------- scope


def test_scope_may_narrow_and_widen_back_to_grant_rfc6749_s6(env):
    """RFC 6749 §6: `scope` narrower than the grant → 200 with exactly that
    scope; wider than the grant → 400 invalid_scope; a later refresh may ask
    for the full originally granted scope again."""
    d, c = env
    t0 = sign_in(d, "web", "alice", PW, SCOPE)
    t1 = rotate(d, "web", t0["refresh_token"], scope="notes:read")
    assert t1["scope"] == "notes:read"
    assert claims(t1["access_token"])["scope"] == "notes:read"
    assert_oauth_error(refresh(d, "web", t1["refresh_token"], scope="notes:read admin"), 400, "invalid_scope")
    t2 = rotate(d, "web", t1["refresh_token"], scope=SCOPE)
    assert set(t2["scope"].split()) == set(SCOPE.split())
    assert set(claims(t2["access_token"])["scope"].split()) == set(SCOPE.split())


def test_scope_beyond_consent_is_invalid_scope_rfc6749_s6(env):
    """RFC 6749 §6: a scope the person did not grant (even one the client is
    registered for) is 400 invalid_scope."""
    d, c = env
    t0 = sign_in(d, "web", "erin", PW, "openid notes:read")
    assert_oauth_error(refresh(d, "web", t0["refresh_token"], scope="notes:read notes:write"),
                       400, "invalid_scope")
    t1 = rotate(d, "web", t0["refresh_token"])
    assert set(t1["scope"].split()) == {"openid", "notes:read"}


# ---------------------------------------------------------------- client authentication


def test_confidential_client_must_authenticate_rfc6749_s6(env):
    """RFC 6749 §6 / §5.2: a confidential client refreshing without
    authentication, or with a wrong secret, gets 401 invalid_client; the
    token is not consumed and works with the right credentials."""
    d, c = env
    auth = conf_auth(c)
    t0 = sign_in(d, "conf", "alice", PW, SCOPE, client_auth=auth)
    assert_oauth_error(refresh(d, "conf", t0["refresh_token"], None), 401, "invalid_client")
    assert_oauth_error(refresh(d, "conf", t0["refresh_token"], "wrong-" + auth), 401, "invalid_client")
    assert_oauth_error(refresh(d, "conf", t0["refresh_token"], ("post", auth)), 401, "invalid_client")
    t1 = rotate(d, "conf", t0["refresh_token"], auth)
    assert t1["refresh_token"] != t0["refresh_token"]


def test_client_secret_post_refresh_rfc6749_s2_3_1(env):
    """RFC 6749 §2.3.1: a client_secret_post client refreshes with its
    credentials in the body."""
    d, c = env
    auth = ("post", c["post"]["client_secret"])
    t0 = sign_in(d, "post", "alice", PW, SCOPE, client_auth=auth)
    t1 = rotate(d, "post", t0["refresh_token"], auth)
    assert claims(t1["access_token"])["client_id"] == "post"


# ---------------------------------------------------------------- OpenID Connect


def test_refresh_returns_new_id_token_oidc_core_s12_2(env):
    """OIDC Core §12.2: with openid, the refresh response carries a new ID
    token with the same iss, sub, aud and auth_time, a new iat/jti, signed
    with a key from /jwks."""
    d, c = env
    t0 = sign_in(d, "web", "alice", PW, SCOPE)
    time.sleep(1.1)
    t1 = rotate(d, "web", t0["refresh_token"])
    assert isinstance(t1.get("id_token"), str)
    _, i0 = verify_jwcrypto(d, t0["id_token"], typ=None)
    _, i1 = verify_jwcrypto(d, t1["id_token"], typ=None)
    for k in ("iss", "sub", "auth_time"):
        assert i1[k] == i0[k], k
    assert i1["aud"] == "web" or i1["aud"] == ["web"]
    assert i1["iss"] == d.issuer
    assert i1["iat"] > i0["iat"]
    assert i1["jti"] != i0["jti"]
    assert claims(t1["access_token"])["sub"] == i1["sub"]


# ---------------------------------------------------------------- people and revocation


def test_disabled_person_refresh_fails_at_once(env):
    """`deputy user disable` revokes everything issued for the person: her
    refresh tokens fail at once with 400 invalid_grant and her access tokens
    introspect inactive."""
    d, c = env
    add_user(d, "frank", PW)
    auth = conf_auth(c)
    t0 = sign_in(d, "conf", "frank", PW, SCOPE, client_auth=auth)
    t1 = rotate(d, "conf", t0["refresh_token"], auth)
    other = sign_in(d, "conf", "alice", PW, SCOPE, client_auth=auth)
    d.cli("user", "disable", "frank")
    assert_invalid_grant(refresh(d, "conf", t1["refresh_token"], auth))
    assert introspect_json(d, t1["access_token"], "conf", auth) == INACTIVE
    # Somebody else's family is untouched.
    rotate(d, "conf", other["refresh_token"], auth)


def test_revoking_refresh_token_kills_family_rfc7009_s2_1(env):
    """RFC 7009 §2.1/§2.2: POST /revoke with the refresh token (client
    authenticated) → 200; then the refresh token fails with invalid_grant and
    the access tokens issued from it introspect inactive."""
    d, c = env
    auth = conf_auth(c)
    t0 = sign_in(d, "conf", "alice", PW, SCOPE, client_auth=auth)
    t1 = rotate(d, "conf", t0["refresh_token"], auth)
    r = revoke(d, t1["refresh_token"], "conf", auth, token_type_hint="refresh_token")
    assert r.status_code == 200, r.text
    assert_invalid_grant(refresh(d, "conf", t1["refresh_token"], auth))
    for t in (t0, t1):
        assert introspect_json(d, t["access_token"], "conf", auth) == INACTIVE
    assert introspect_json(d, t1["refresh_token"], "conf", auth) == INACTIVE


def test_public_client_revokes_its_refresh_token_rfc7009_s2_1(env):
    """RFC 7009 §2.1: a public client identifies itself with client_id; its
    revoked refresh token then fails with invalid_grant."""
    d, c = env
    t0 = sign_in(d, "web", "alice", PW, SCOPE)
    r = revoke(d, t0["refresh_token"], "web", None)
    assert r.status_code == 200, r.text
    assert_invalid_grant(refresh(d, "web", t0["refresh_token"]))
