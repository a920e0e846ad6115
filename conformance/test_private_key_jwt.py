"""private_key_jwt client authentication: RFC 7523 §2.2 and §3, RFC 7521 §4.2,
OpenID Connect Core §9, RFC 7515 §4.1, RFC 8725 §2/§3.

Every refusal must be 401 invalid_client (RFC 6749 §5.2)."""

import hashlib
import hmac
import json
import threading
import time
import uuid

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey, RSAKey

from conftest import (JWT_BEARER, ClientKey, Deputy, LocalHTTP, assert_oauth_error, assert_token_ok,
                      assertion_claims, assertion_form, b64url, basic_auth, jwt_parts, make_assertion,
                      sign_compact)

CID = "jwt-svc"


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir)
    keys = {
        "main": ClientKey("ES256", kid="k1"),
        "other": ClientKey("ES256", kid="k-other"),
        "second": ClientKey("ES256", kid="k2"),
        "nokid": ClientKey("ES256", kid=""),
        "rsa": ClientKey("RS256", kid="rsa1"),
        "ps": ClientKey("PS256", kid="ps1"),
        "ed": ClientKey("EdDSA", kid="ed1"),
    }
    d.add_client(CID, "private_key_jwt", keys=[keys["main"], keys["second"]])
    d.add_client("jwt-other", "private_key_jwt", key=keys["other"])
    d.add_client("jwt-nokid", "private_key_jwt", key=keys["nokid"])
    d.add_client("jwt-rsa", "private_key_jwt", key=keys["rsa"], alg="RS256")
    d.add_client("jwt-ps", "private_key_jwt", key=keys["ps"], alg="PS256")
    d.add_client("jwt-ed", "private_key_jwt", key=keys["ed"], alg="EdDSA")
    secret = d.add_client("jwt-secret-client", "client_secret_basic")
    d.add_client("jwt-public", "none", kind="app", redirect_uris=["https://app.example/cb"])
    d.start()
    yield d, keys, secret
    d.stop()


def post(d, assertion, **extra):
    return d.token(assertion_form(assertion, **extra))


def refused(resp):
    assert_oauth_error(resp, 401, "invalid_client")


# ---------------------------------------------------------------- happy paths


@pytest.mark.parametrize("aud_kind", ["issuer", "token_endpoint", "array_issuer"])
def test_valid_assertion_issues_token_rfc7523_s2_2(env, aud_kind):
    """RFC 7523 §2.2/§3 item 3: aud may be the issuer or the token endpoint URL;
    a single value may come as a one-element array (RFC 7519 §4.1.3,
    draft-ietf-oauth-rfc7523bis)."""
    d, keys, _ = env
    aud = {
        "issuer": d.issuer,
        "token_endpoint": d.token_endpoint,
        "array_issuer": [d.issuer],
    }[aud_kind]
    body = assert_token_ok(post(d, make_assertion(keys["main"], CID, aud)))
    claims = jwt_parts(body["access_token"])[1]
    assert claims["sub"] == CID and claims["client_id"] == CID


def test_client_id_param_equal_to_iss_is_accepted_rfc7521_s4_2(env):
    """RFC 7521 §4.2: client_id is optional and, when sent, names the same client."""
    d, keys, _ = env
    assert_token_ok(post(d, make_assertion(keys["main"], CID, d.issuer), client_id=CID))


def test_second_registered_key_by_kid_rfc7515_s4_1_4(env):
    """RFC 7515 §4.1.4: the kid selects among the registered keys."""
    d, keys, _ = env
    assert_token_ok(post(d, make_assertion(keys["second"], CID, d.issuer)))


def test_assertion_without_kid_rfc7515_s4_1_4(env):
    """kid is OPTIONAL (RFC 7515 §4.1.4): a kid-less assertion verifies against
    the registered key set."""
    d, keys, _ = env
    a = make_assertion(keys["nokid"], "jwt-nokid", d.issuer)
    assert "kid" not in jwt_parts(a)[0]
    assert_token_ok(post(d, a))


def test_authlib_private_key_jwt_es256(env):
    """Interop: authlib's PrivateKeyJWT client auth (aud = token endpoint)."""
    d, keys, _ = env
    key = ECKey.import_key(keys["main"].pem_private())
    sess = OAuth2Session(CID, key, token_endpoint_auth_method="private_key_jwt")
    # authlib's default exp is iat + 3600, within deputy's default assertion_max_age (3600 s)
    sess.register_client_auth_method(PrivateKeyJWT(d.token_endpoint, alg="ES256"))
    tok = sess.fetch_token(d.token_endpoint, grant_type="client_credentials")
    assert tok["token_type"] == "Bearer"
    assert jwt_parts(tok["access_token"])[1]["client_id"] == CID


def test_authlib_private_key_jwt_rs256(env):
    """Interop: authlib's default RS256 PrivateKeyJWT with an RS256 client."""
    d, keys, _ = env
    key = RSAKey.import_key(keys["rsa"].pem_private())
    sess = OAuth2Session("jwt-rsa", key, token_endpoint_auth_method="private_key_jwt")
    sess.register_client_auth_method(PrivateKeyJWT(d.token_endpoint, headers={"kid": "rsa1"},
                                                   claims={"exp": int(time.time()) + 120}))
    tok = sess.fetch_token(d.token_endpoint, grant_type="client_credentials")
    assert jwt_parts(tok["access_token"])[1]["sub"] == "jwt-rsa"


@pytest.mark.parametrize("client,key", [("jwt-rsa", "rsa"), ("jwt-ps", "ps"), ("jwt-ed", "ed")])
def test_registered_alg_is_accepted_rfc7523_s3_item_9(env, client, key):
    """RFC 7523 §3 item 9 / --alg: RS256, PS256 and EdDSA clients authenticate."""
    d, keys, _ = env
    assert_token_ok(post(d, make_assertion(keys[key], client, d.issuer)))


# ---------------------------------------------------------------- assertion type and identity


def test_wrong_assertion_type_rfc7521_s4_2(env):
    """RFC 7521 §4.2: client_assertion_type must be the jwt-bearer URN."""
    d, keys, _ = env
    a = make_assertion(keys["main"], CID, d.issuer)
    refused(d.token({"grant_type": "client_credentials",
                     "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                     "client_assertion": a}))


def test_missing_assertion_type_rfc7521_s4_2(env):
    d, keys, _ = env
    a = make_assertion(keys["main"], CID, d.issuer)
    refused(d.token({"grant_type": "client_credentials", "client_assertion": a}))


def test_assertion_type_without_assertion(env):
    d, _, _ = env
    refused(d.token({"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER}))


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b", "a.b.c", "e30.e30.", "....",
                                     b64url(b"{}") + "." + b64url(b"[]") + ".AA"])
def test_malformed_assertion_rfc7523_s3(env, garbage):
    d, _, _ = env
    refused(post(d, garbage))


def test_iss_differs_from_sub_rfc7523_s3_items_1_2(env):
    """RFC 7523 §3 items 1-2 / OIDC Core §9: iss and sub are both the client_id."""
    d, keys, _ = env
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, sub="jwt-other")))
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, iss="jwt-other")))


@pytest.mark.parametrize("claim", ["iss", "sub"])
def test_missing_iss_or_sub_rfc7523_s3(env, claim):
    d, keys, _ = env
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, **{claim: None})))


def test_unknown_client_rfc7523_s3_item_1(env):
    d, keys, _ = env
    refused(post(d, make_assertion(keys["main"], "no-such-client", d.issuer)))


def test_client_id_param_differs_from_iss_rfc7521_s4_2(env):
    """RFC 7521 §4.2: a client_id naming another client is refused."""
    d, keys, _ = env
    refused(post(d, make_assertion(keys["main"], CID, d.issuer), client_id="jwt-other"))


# ---------------------------------------------------------------- audience


@pytest.mark.parametrize("aud", [
    "ARRAY_BOTH",
    "ARRAY_OURS_TWICE",
    "INTROSPECT",
    "BC_AUTHORIZE",
    "https://evil.example/token",
    "ISSUER_SLASH",
    "TOKEN_ENDPOINT_UPPER",
    None,
])
def test_bad_audience_rfc7523_s3_item_3(env, aud):
    """RFC 7523 §3 item 3: aud must identify this server; deputy takes one
    value (issuer or token endpoint; at /token the /bc-authorize URL is none
    of those). Lists of several
    audiences (even containing the right value: draft-ietf-oauth-rfc7523bis),
    other URLs and a missing aud are refused."""
    d, keys, _ = env
    value = {
        "ARRAY_BOTH": [d.issuer, "https://evil.example/"],
        "ARRAY_OURS_TWICE": [d.issuer, d.token_endpoint],
        "INTROSPECT": d.url("/introspect"),
        # CIBA Core §7.1 makes it an audience at /bc-authorize only.
        "BC_AUTHORIZE": d.url("/bc-authorize"),
        "ISSUER_SLASH": d.issuer + "/",
        "TOKEN_ENDPOINT_UPPER": d.token_endpoint.upper(),
    }.get(aud, aud)
    if value is None:
        claims = assertion_claims(CID, d.issuer)
        del claims["aud"]
        a = sign_compact({"alg": "ES256", "kid": "k1"}, claims, keys["main"].jwk)
    else:
        a = make_assertion(keys["main"], CID, value)
    refused(post(d, a))


# ---------------------------------------------------------------- time claims


def test_missing_exp_rfc7523_s3_item_4(env):
    """RFC 7523 §3 item 4: exp is required."""
    d, keys, _ = env
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, exp=None)))


def test_expired_rfc7523_s3_item_4(env):
    """RFC 7523 §3 item 4: an expired JWT is refused (beyond the 30 s skew)."""
    d, keys, _ = env
    now = int(time.time())
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, iat=now - 120, exp=now - 40)))


def test_expired_within_clock_skew_is_accepted_rfc7523_s3_item_4(env):
    """RFC 7523 §3 item 4 allows a small leeway for clock skew (default 30 s)."""
    d, keys, _ = env
    now = int(time.time())
    assert_token_ok(post(d, make_assertion(keys["main"], CID, d.issuer, iat=now - 60, exp=now - 10)))


def test_exp_too_far_in_future_rfc7523_s3_item_4(env):
    """exp more than assertion_max_age (default 3600 s) + skew (30 s) ahead is refused."""
    d, keys, _ = env
    now = int(time.time())
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, exp=now + 3600 + 30 + 30)))
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, exp=now + 86400 * 365)))


def test_exp_at_max_age_is_accepted(env):
    d, keys, _ = env
    now = int(time.time())
    assert_token_ok(post(d, make_assertion(keys["main"], CID, d.issuer, exp=now + 3595)))


def test_iat_in_future_rfc7523_s3_item_6(env):
    """RFC 7523 §3 item 6: iat may be used to reject JWTs issued in the future."""
    d, keys, _ = env
    now = int(time.time())
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, iat=now + 90, exp=now + 200)))


def test_nbf_in_future_rfc7523_s3_item_5(env):
    """RFC 7523 §3 item 5: a JWT MUST NOT be accepted before nbf."""
    d, keys, _ = env
    now = int(time.time())
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, nbf=now + 90, exp=now + 200)))


def test_iat_and_nbf_within_skew_are_accepted(env):
    d, keys, _ = env
    now = int(time.time())
    assert_token_ok(post(d, make_assertion(keys["main"], CID, d.issuer, iat=now + 10, nbf=now + 10)))


# ---------------------------------------------------------------- jti and replay


def test_missing_jti_rfc7523_s3_item_7(env):
    """jti is required by deputy (RFC 7523 §3 item 7; OIDC Core §9 REQUIRED)."""
    d, keys, _ = env
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, jti=None)))


def test_replay_is_refused_rfc7523_s3_item_7(env):
    """RFC 7523 §3 item 7 / OIDC Core §9: a jti is single use."""
    d, keys, _ = env
    a = make_assertion(keys["main"], CID, d.issuer)
    assert_token_ok(post(d, a))
    refused(post(d, a))
    refused(post(d, a, scope="read"))


def test_same_jti_new_signature_is_refused_rfc7523_s3_item_7(env):
    """The jti (not the JWT text) is what is single use."""
    d, keys, _ = env
    jti = uuid.uuid4().hex
    now = int(time.time())
    assert_token_ok(post(d, make_assertion(keys["main"], CID, d.issuer, jti=jti, exp=now + 100)))
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, jti=jti, exp=now + 110)))


def test_assertion_spent_by_a_refused_request(env):
    """An assertion presented in a request that fails (invalid_scope) is still
    spent: it cannot be replayed afterwards."""
    d, keys, _ = env
    a = make_assertion(keys["main"], CID, d.issuer)
    assert_oauth_error(post(d, a, scope="admin"), 400, "invalid_scope")
    refused(post(d, a))


@pytest.mark.parametrize("path,params,error", [
    ("/revoke", {"token": "x", "token_type_hint": "id_token"}, "unsupported_token_type"),
    ("/revoke", {"token_type_hint": "access_token"}, "invalid_request"),
    ("/introspect", {"token_type_hint": "access_token"}, "invalid_request"),
])
def test_assertion_spent_by_a_refused_introspection_or_revocation_rfc7523_s3_item_7(env, path, params, error):
    """RFC 7523 §3 item 7: an assertion that authenticated a request the
    endpoint then refuses (RFC 7009 §2.2.1 / RFC 7662 §2.1 parameter errors)
    is spent all the same: at /token it is a replay (401 invalid_client)."""
    d, keys, _ = env
    a = make_assertion(keys["main"], CID, d.issuer)
    r = requests.post(d.url(path), data=assertion_form(a, **params), timeout=10)
    assert_oauth_error(r, 400, error)
    refused(post(d, a))


def test_concurrent_replay_race_exactly_one_wins_rfc7523_s3_item_7(env):
    """20 threads POST the same valid assertion at once: exactly one 200, the
    other 19 are 401 invalid_client, no 5xx."""
    d, keys, _ = env
    a = make_assertion(keys["main"], CID, d.issuer)
    form = assertion_form(a)
    barrier = threading.Barrier(20)
    results = [None] * 20

    def worker(i):
        with requests.Session() as s:
            barrier.wait()
            try:
                r = s.post(d.token_endpoint, data=form, timeout=20)
                results[i] = (r.status_code, r.json().get("error") if r.status_code != 200 else None)
            except Exception as e:  # noqa: BLE001
                results[i] = ("exc", repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = [r[0] for r in results]
    assert statuses.count(200) == 1, results
    assert all(r == (401, "invalid_client") for r in results if r[0] != 200), results


def test_replay_refused_across_restart_rfc7523_s3_item_7(new_deputy):
    """Used jti values survive a server restart (same database)."""
    d = new_deputy()
    key = ClientKey("ES256")
    d.add_client("jwt-restart", "private_key_jwt", key=key)
    d.start()
    a = make_assertion(key, "jwt-restart", d.issuer)
    assert_token_ok(post(d, a))
    d.restart()
    refused(post(d, a))
    # a fresh assertion still works after the restart
    assert_token_ok(post(d, make_assertion(key, "jwt-restart", d.issuer)))


# ---------------------------------------------------------------- signature and header attacks


def test_signed_by_another_key_rfc7523_s3_item_9(env):
    """RFC 7523 §3 item 9: the signature must verify with the client's key."""
    d, keys, _ = env
    attacker = ClientKey("ES256", kid="k1")  # same kid as the registered key
    refused(post(d, make_assertion(attacker, CID, d.issuer)))
    # another registered client's key cannot sign for this client
    other = keys["other"]
    refused(post(d, make_assertion(other, CID, d.issuer)))
    refused(post(d, make_assertion(other, CID, d.issuer, header_drop=("kid",))))


def test_tampered_payload_rfc7515_s5_2(env):
    """RFC 7515 §5.2: a changed payload breaks the signature."""
    d, keys, _ = env
    a = make_assertion(keys["main"], CID, d.issuer)
    h, p, s = a.split(".")
    claims = jwt_parts(a)[1]
    claims["exp"] += 1
    claims["jti"] = uuid.uuid4().hex
    forged = f"{h}.{b64url(json.dumps(claims).encode())}.{s}"
    refused(post(d, forged))


def test_unknown_kid_rfc7515_s4_1_4(env):
    d, keys, _ = env
    refused(post(d, make_assertion(keys["main"], CID, d.issuer, header_extra={"kid": "no-such-kid"})))


def test_alg_none_rfc8725_s3_1(env):
    """RFC 8725 §3.1 / RFC 7518 §3.6: an unsecured JWT is refused."""
    d, keys, _ = env
    claims = assertion_claims(CID, d.issuer)
    for alg in ("none", "None", "NONE"):
        refused(post(d, sign_compact({"alg": alg, "typ": "JWT"}, claims, None, alg="none")))
        claims = assertion_claims(CID, d.issuer)
    # also with the real kid
    refused(post(d, sign_compact({"alg": "none", "kid": "k1"}, assertion_claims(CID, d.issuer), None, alg="none")))


def _hs256(header, claims, secret: bytes) -> str:
    from conftest import b64url_json
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode()
    sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64url(sig)}"


def test_hs256_with_public_key_as_secret_rfc8725_s2_1(env):
    """RFC 8725 §2.1/§3.1 algorithm confusion: HS256 keyed with the client's
    public key (JWK JSON, JWKS JSON, PEM) is refused."""
    d, keys, _ = env
    k = keys["main"]
    secrets = [
        json.dumps(k.public_dict()).encode(),
        json.dumps(k.public_dict(), separators=(",", ":")).encode(),
        json.dumps(k.jwks()).encode(),
        k.jwk.export_to_pem().strip(),
        k.jwk.export_to_pem(),
    ]
    for sec in secrets:
        for hdr in ({"alg": "HS256", "kid": "k1"}, {"alg": "HS256"}):
            refused(post(d, _hs256(hdr, assertion_claims(CID, d.issuer), sec)))


def test_alg_not_the_registered_one_rfc8725_s3_1(env):
    """RFC 8725 §3.1: only the registered alg. An RS256 client's own key signing
    PS256, and an attacker RSA key under the ES256 client's kid, are refused."""
    d, keys, _ = env
    rsa = keys["rsa"]
    hdr = {"alg": "PS256", "kid": "rsa1"}
    refused(post(d, sign_compact(hdr, assertion_claims("jwt-rsa", d.issuer), rsa.jwk)))
    attacker = ClientKey("RS256", kid="k1")
    refused(post(d, make_assertion(attacker, CID, d.issuer)))
    # PS256 client asserting with RS256 using its own key
    refused(post(d, sign_compact({"alg": "RS256", "kid": "ps1"},
                                 assertion_claims("jwt-ps", d.issuer), keys["ps"].jwk)))


def test_embedded_jwk_header_is_not_trusted_rfc8725_s3_10(env):
    """A `jwk` header carrying the attacker's own key does not authenticate
    (keys come only from registration)."""
    d, keys, _ = env
    attacker = ClientKey("ES256", kid="evil")
    pub = attacker.public_dict()
    for extra in ({"jwk": pub}, {"jwk": pub, "kid": "k1"}, {"jwk": {**pub, "kid": "k1"}, "kid": "k1"}):
        refused(post(d, make_assertion(attacker, CID, d.issuer, header_extra=extra)))
    refused(post(d, make_assertion(attacker, CID, d.issuer, header_extra={"jwk": pub}, header_drop=("kid",))))


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_jku_x5u_headers_are_never_fetched_rfc8725_s3_10(env, header):
    """RFC 8725 §3.10 / RFC 7515 §4.1.2, §4.1.5: a URL in jku/x5u is never
    dereferenced; an attacker-signed assertion pointing to the attacker's
    key set is refused."""
    d, keys, _ = env
    attacker = ClientKey("ES256", kid="evil")
    with LocalHTTP(attacker.jwks()) as srv:
        url = srv.url("/attacker-keys")
        refused(post(d, make_assertion(attacker, CID, d.issuer, header_extra={header: url})))
        refused(post(d, make_assertion(attacker, CID, d.issuer, header_extra={header: url, "kid": "k1"})))
        refused(post(d, make_assertion(attacker, CID, d.issuer, header_extra={header: url},
                                       header_drop=("kid",))))
        time.sleep(0.3)
        assert srv.count() == 0, srv.requests


def test_crit_header_is_refused_rfc7515_s4_1_11(env):
    """RFC 7515 §4.1.11: a JWS with a crit extension the recipient does not
    understand MUST be rejected, even when signed by the right key."""
    d, keys, _ = env
    for extra in ({"crit": ["exp"], "exp": 1}, {"crit": ["urn:example:ext"], "urn:example:ext": True},
                  {"crit": []}):
        refused(post(d, make_assertion(keys["main"], CID, d.issuer, header_extra=extra)))


# ---------------------------------------------------------------- clients of other kinds


def test_assertion_for_secret_client_is_refused_rfc7523_s2_2(env):
    """A client registered with client_secret_basic cannot use an assertion,
    whatever key signed it."""
    d, keys, secret = env
    attacker = ClientKey("ES256")
    refused(post(d, make_assertion(attacker, "jwt-secret-client", d.issuer)))
    refused(post(d, make_assertion(keys["main"], "jwt-secret-client", d.issuer)))
    # HS256 keyed with the client's own secret (client_secret_jwt) is not private_key_jwt
    refused(post(d, _hs256({"alg": "HS256"}, assertion_claims("jwt-secret-client", d.issuer),
                           secret["client_secret"].encode())))
    # and the client's own secret still works the registered way
    assert_token_ok(d.token({"grant_type": "client_credentials"},
                            headers=basic_auth("jwt-secret-client", secret["client_secret"])))


def test_assertion_for_public_client_is_refused(env):
    d, _, _ = env
    attacker = ClientKey("ES256")
    refused(post(d, make_assertion(attacker, "jwt-public", d.issuer)))
    refused(post(d, sign_compact({"alg": "none"}, assertion_claims("jwt-public", d.issuer), None, alg="none")))


def test_jwt_client_cannot_use_a_secret(env):
    """A private_key_jwt client has no secret: Basic or post secrets are refused."""
    d, _, _ = env
    refused(d.token({"grant_type": "client_credentials"}, headers=basic_auth(CID, "x" * 43)))
    refused(d.token({"grant_type": "client_credentials", "client_id": CID, "client_secret": "x" * 43}))
    refused(d.token({"grant_type": "client_credentials", "client_id": CID}))


def test_deputy_access_token_is_not_a_client_assertion_rfc7523_s3(env):
    """A token deputy itself signed (iss = deputy) cannot be replayed as the
    client's assertion."""
    d, keys, _ = env
    tok = assert_token_ok(post(d, make_assertion(keys["main"], CID, d.issuer)))["access_token"]
    refused(post(d, tok))
    refused(post(d, tok, client_id=CID))


def test_duplicate_claim_names_rfc7519_s4(env):
    """RFC 7519 §4: with duplicate claim names a JWT MUST be rejected or only
    the lexically last member used. Here the last `iss` names another client,
    so either way the assertion (signed by this client's key) is refused."""
    d, keys, _ = env
    now = int(time.time())
    raw = ('{"iss":"%s","sub":"%s","aud":"%s","iat":%d,"exp":%d,"jti":"%s","iss":"jwt-other"}'
           % (CID, CID, d.issuer, now, now + 60, uuid.uuid4().hex)).encode()
    refused(post(d, sign_compact({"alg": "ES256", "kid": "k1"}, raw, keys["main"].jwk)))


def test_duplicate_alg_header_rfc7515_s5_2(env):
    """RFC 7515 §5.2: duplicate header names must be rejected or the last one
    used; an unsigned JWS whose last alg is `none` is refused either way."""
    d, keys, _ = env
    from conftest import b64url_json
    hdr = b64url(b'{"alg":"ES256","kid":"k1","alg":"none"}')
    refused(post(d, f"{hdr}.{b64url_json(assertion_claims(CID, d.issuer))}."))


@pytest.mark.parametrize("claims", [
    {"exp": 9223372036854775807},   # i64::MAX
    {"exp": 1e300},                 # a float far beyond i64
    {"exp": 18446744073709551615},  # u64::MAX
    {"exp": -9223372036854775808},  # i64::MIN
    {"nbf": 9223372036854775807, "exp": None},
], ids=["exp_i64_max", "exp_1e300", "exp_u64_max", "exp_i64_min", "nbf_max_no_exp"])
def test_extreme_numeric_dates_are_refused_not_crashing_rfc7519_s2(new_deputy, claims):
    """RFC 7519 §2 NumericDate is any JSON number: absurd values from a client
    holding a valid key must be answered 401 invalid_client, never a dropped
    connection or a panic."""
    d = new_deputy()
    k = ClientKey("ES256")
    d.add_client("jwt-extreme", "private_key_jwt", key=k)
    d.start()
    a = make_assertion(k, "jwt-extreme", d.issuer, **claims)
    try:
        r = post(d, a)
    except requests.ConnectionError as e:
        pytest.fail(f"deputy dropped the connection: {e!r}\n{d.log_tail(1500)}")
    refused(r)
    assert d.get("/healthz").status_code == 200
    assert "panicked" not in d.log_tail(100000)


def test_embedded_x5c_header_is_not_trusted_rfc8725_s3_10(env):
    """An `x5c` chain carrying the attacker's self-signed certificate does not
    authenticate (RFC 7515 §4.1.6 keys are not taken from the JWS itself)."""
    import base64
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    d, _, _ = env
    attacker = ClientKey("ES256", kid="k1")
    priv = serialization.load_pem_private_key(attacker.pem_private(), password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CID)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(priv.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(priv, hashes.SHA256()))
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    refused(post(d, make_assertion(attacker, CID, d.issuer, header_extra={"x5c": [der]})))
    refused(post(d, make_assertion(attacker, CID, d.issuer, header_extra={"x5c": [der]}, header_drop=("kid",))))


def test_concurrent_distinct_assertions_all_succeed(env):
    """Control for the replay race: 20 different valid assertions at once all
    get 200 (the race test's 401s come from replay, not from load)."""
    d, keys, _ = env
    forms = [assertion_form(make_assertion(keys["main"], CID, d.issuer)) for _ in range(20)]
    barrier = threading.Barrier(20)
    results = [None] * 20

    def worker(i):
        with requests.Session() as s:
            barrier.wait()
            try:
                results[i] = s.post(d.token_endpoint, data=forms[i], timeout=20).status_code
            except Exception as e:  # noqa: BLE001
                results[i] = repr(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 20, results
