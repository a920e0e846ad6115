"""RS256 ID tokens (OIDC Core §15.1: an OP must be able to sign ID tokens
with RS256; §3.1.3.7 step 7: the RP validates the ID token with the
algorithm it registered, `id_token_signed_response_alg`). A client
registered `--id-token-alg RS256` completes a login and its ID token is
validated by PyJWT and jwcrypto with the RSA key from /jwks (RFC 7517 §4,
RFC 7518 §6.3.1, RFC 7638 kid); access tokens stay ES256; a rotation
publishes a new P-256 key and a new RSA key together."""

from __future__ import annotations

import json
import time

import jwt as pyjwt
import pytest
import requests
from jwcrypto import jwk, jws

from conftest import Deputy, jwt_parts
from oidc_support import (NO_LOGIN_RATE_LIMIT, AuthRequest, Browser, add_app, add_user, left_half_hash, query_of,
                          redeem, sign_in_and_allow)

RP = "https://rp.example/cb"
RP_BYE = "https://rp.example/bye"
WEB = "https://web.example/cb"


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir, NO_LOGIN_RATE_LIMIT)
    add_user(d, "alice", email="a@x.example", name="Alice A")
    add_app(d, "rp", redirect_uris=[RP], post_logout=[RP_BYE], id_token_alg="RS256")
    add_app(d, "web", redirect_uris=[WEB])
    d.start()
    yield d
    d.stop()


def login(d: Deputy, client_id: str, redirect_uri: str, browser: Browser | None = None) -> tuple[AuthRequest, dict]:
    b = browser or Browser(d)
    req = AuthRequest(client_id, redirect_uri)
    code = sign_in_and_allow(b, req, "alice")["code"]
    r = redeem(d, req, code)
    assert r.status_code == 200, r.text
    return req, r.json()


def jwks(d: Deputy) -> dict:
    r = requests.get(d.url("/jwks"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_rs256_client_id_token_validates_with_pyjwt_and_jwcrypto_oidc_core_s15_1_s3_1_3_7(env):
    """OIDC Core §3.1.3.7: with `id_token_signed_response_alg` RS256 the ID
    token's JOSE header says RS256 and names (kid) an RSA key of the OP's
    JWKS; it validates with that key (PyJWT: signature, iss, aud, exp, iat;
    jwcrypto: signature) and not with any other algorithm; at_hash (§3.1.3.6)
    is the left half of the access token's SHA-256, RS256's hash."""
    d = env
    req, t = login(d, "rp", RP)
    id_token = t["id_token"]
    header, _ = jwt_parts(id_token)
    assert header["alg"] == "RS256" and header["typ"] == "JWT", header
    published = [k for k in jwks(d)["keys"] if k["kid"] == header["kid"]]
    assert len(published) == 1, header
    rsa = published[0]
    assert (rsa["kty"], rsa["alg"], rsa["use"]) == ("RSA", "RS256", "sig"), rsa

    # PyJWT, allowing RS256 only: the RP's registered algorithm.
    claims = pyjwt.decode(id_token, pyjwt.PyJWK(rsa).key, algorithms=["RS256"], audience="rp",
                          issuer=d.issuer, options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    assert claims["nonce"] == req.nonce
    assert claims["azp"] == "rp"
    assert claims["at_hash"] == left_half_hash(t["access_token"])
    # jwcrypto, independently, with the key picked from the JWK Set by kid.
    obj = jws.JWS()
    obj.deserialize(id_token)
    obj.verify(jwk.JWKSet.from_json(json.dumps(jwks(d))).get_key(header["kid"]), alg="RS256")
    assert json.loads(obj.payload)["sub"] == claims["sub"]
    # An RP that expects ES256 refuses it (no algorithm confusion).
    with pytest.raises(pyjwt.InvalidAlgorithmError):
        pyjwt.decode(id_token, pyjwt.PyJWK(rsa).key, algorithms=["ES256"], audience="rp", issuer=d.issuer)
    # A changed payload does not validate.
    h, _, s = id_token.split(".")
    forged = ".".join([h, pyjwt.utils.base64url_encode(b'{"sub":"mallory"}').decode(), s])
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(forged, pyjwt.PyJWK(rsa).key, algorithms=["RS256"], audience="rp", issuer=d.issuer)


def test_rs256_key_is_a_3072_bit_rsa_jwk_with_its_rfc7638_thumbprint_as_kid(env):
    """RFC 7517 §4 / RFC 7518 §6.3.1: the RSA key is published with `n`, `e`
    and no private member; its kid is its RFC 7638 thumbprint (computed by
    jwcrypto); discovery lists ES256 and RS256 for ID tokens (OIDC Discovery §3)."""
    d = env
    keys = jwks(d)["keys"]
    rsa = [k for k in keys if k["kty"] == "RSA"]
    assert len(rsa) == 1 and len([k for k in keys if k["kty"] == "EC"]) == 1, keys
    k = rsa[0]
    assert set(k) == {"kty", "kid", "use", "alg", "n", "e"}, k
    assert jwk.JWK(**k).thumbprint() == k["kid"]
    n = int.from_bytes(pyjwt.utils.base64url_decode(k["n"]), "big")
    assert n.bit_length() == 3072
    meta = requests.get(d.url("/.well-known/openid-configuration"), timeout=10).json()
    assert meta["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]


def test_rs256_client_access_token_and_es256_clients_id_token_stay_es256(env):
    """Only the ID tokens of a client that registered RS256 are RS256: its
    access token (RFC 9068) and another client's ID token are ES256 and
    verify with the P-256 key; the RS256 ID token is accepted as
    `id_token_hint` at logout (RP-Initiated Logout 1.0 §2)."""
    d = env
    b = Browser(d)
    _, t = login(d, "rp", RP, b)
    at_header, _ = jwt_parts(t["access_token"])
    assert at_header["alg"] == "ES256"
    ec = [k for k in jwks(d)["keys"] if k["kid"] == at_header["kid"]]
    assert ec and ec[0]["kty"] == "EC"
    pyjwt.decode(t["access_token"], pyjwt.PyJWK(ec[0]).key, algorithms=["ES256"], audience=d.issuer,
                 issuer=d.issuer)
    _, web = login(d, "web", WEB)
    assert jwt_parts(web["id_token"])[0]["alg"] == "ES256"
    # The RS256 ID token presented as a bearer token is refused (RFC 6750 §3.1).
    r = requests.get(d.url("/userinfo"), headers={"Authorization": f"Bearer {t['id_token']}"}, timeout=10)
    assert r.status_code == 401
    r = b.get("/logout", params={"id_token_hint": t["id_token"], "post_logout_redirect_uri": RP_BYE,
                                 "state": "s1"})
    assert r.status_code == 303, (r.status_code, r.text[:300])
    assert r.headers["Location"].split("?")[0] == RP_BYE
    assert query_of(r.headers["Location"]) == {"state": "s1"}


def test_rotation_publishes_a_new_p256_and_a_new_rsa_key_together(new_deputy):
    """`deputy keys rotate` makes a key generation: a P-256 key and an RSA
    key, both published at once and both pending until `key_prepublish`
    has passed (OIDC Core §10.1.1: keys are published before they sign)."""
    d = new_deputy()
    d.start()
    before = {k["kid"] for k in jwks(d)["keys"]}
    assert len(before) == 2
    out = d.cli("keys", "rotate")
    assert out["kid"] != out["rsa_kid"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and {out["kid"], out["rsa_kid"]} - {k["kid"] for k in jwks(d)["keys"]}:
        time.sleep(0.2)
    keys = {k["kid"]: k for k in jwks(d)["keys"]}
    assert set(keys) == before | {out["kid"], out["rsa_kid"]}
    assert keys[out["kid"]]["kty"] == "EC" and keys[out["rsa_kid"]]["kty"] == "RSA"
    states = {k["kid"]: (k["alg"], k["state"]) for k in d.cli("keys", "list")}
    assert states[out["kid"]] == ("ES256", "pending")
    assert states[out["rsa_kid"]] == ("RS256", "pending")
    assert sorted(s for kid, s in states.items() if kid in before) == [("ES256", "active"), ("RS256", "active")]
