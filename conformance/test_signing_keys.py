"""deputy's own signing keys: tokens verify against the published JWKS with
two independent libraries (RFC 7515 §5.2, RFC 7517 §5, RFC 9068 §4), and key
rotation publishes before signing and keeps old keys published while tokens
they signed may still be live (RFC 7517 §5, OIDC Core §10.1.1)."""

import base64
import json
import time

import jwt as pyjwt
import pytest
from jwcrypto import jwk
from jwcrypto import jwt as jcjwt

from conftest import Deputy, assert_token_ok, b64url_json, basic_auth, jwt_parts, unb64url, sqlite_only

API = "https://api.example/"


def get_token(d, client) -> str:
    r = d.token({"grant_type": "client_credentials"}, headers=basic_auth(client["id"], client["client_secret"]))
    return assert_token_ok(r)["access_token"]


def verify_jwcrypto(d, token: str) -> dict:
    keyset = jwk.JWKSet.from_json(d.get("/jwks").text)
    t = jcjwt.JWT(jwt=token, key=keyset, algs=["ES256"],
                  check_claims={"iss": d.issuer, "aud": API, "exp": None, "iat": None, "jti": None})
    return json.loads(t.claims)


def verify_pyjwt(d, token: str) -> dict:
    client = pyjwt.PyJWKClient(d.url("/jwks"), cache_keys=False, cache_jwk_set=False)
    key = client.get_signing_key_from_jwt(token)
    return pyjwt.decode(token, key.key, algorithms=["ES256"], audience=API, issuer=d.issuer,
                        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})


def wait_for(pred, timeout=5.0, step=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(step)


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir)
    c = d.add_client("keys-svc", "client_secret_basic", audiences=[API])
    d.start()
    yield d, c
    d.stop()


def test_token_verifies_with_jwcrypto_rfc7515_s5_2(env):
    """RFC 7515 §5.2 / RFC 9068 §4: the access token verifies with a key from
    the JWKS selected by kid (jwcrypto)."""
    d, c = env
    tok = get_token(d, c)
    claims = verify_jwcrypto(d, tok)
    assert claims["sub"] == "keys-svc"


def test_token_verifies_with_pyjwt_rfc9068_s4(env):
    """Second, independent verifier: PyJWT's PyJWKClient against jwks_uri."""
    d, c = env
    tok = get_token(d, c)
    claims = verify_pyjwt(d, tok)
    assert claims["client_id"] == "keys-svc"
    assert pyjwt.get_unverified_header(tok)["typ"] == "at+jwt"


def test_tampered_token_fails_both_verifiers(env):
    """The verification above is real: a modified signature or payload fails."""
    d, c = env
    tok = get_token(d, c)
    h, p, s = tok.split(".")
    bad_sig = f"{h}.{p}.{s[:-4]}{'AAAA' if s[-4:] != 'AAAA' else 'BBBB'}"
    claims = jwt_parts(tok)[1]
    claims["scope"] = "admin"
    bad_payload = f"{h}.{b64url_json(claims)}.{s}"
    for bad in (bad_sig, bad_payload):
        with pytest.raises(Exception):
            verify_jwcrypto(d, bad)
        with pytest.raises(pyjwt.PyJWTError):
            verify_pyjwt(d, bad)


def test_keys_list_shows_one_active_key_generation(env):
    """One generation: the P-256 key and its RSA key (OIDC Core §15.1), both active."""
    d, _ = env
    keys = d.cli("keys", "list")
    assert [(k["alg"], k["state"]) for k in keys] == [("ES256", "active"), ("RS256", "active")]
    assert [k["kid"] for k in keys] == [k["kid"] for k in d.jwks()["keys"]]


# The shortest pre-publication deputy accepts: it must outlast the JWKS
# max-age, so the cache is switched off.
SHORT_PREPUBLISH = {"DEPUTY_KEY_PREPUBLISH": "1", "DEPUTY_JWKS_MAX_AGE": "0"}


def test_rotation_with_short_prepublish_rfc7517_s5(new_deputy):
    """With key_prepublish=1 (jwks_max_age=0): rotate publishes the new key
    within ~3 s, new tokens are signed by it once it activates and verify, the
    old key stays published and its tokens still verify; keys list: new
    active, old retired."""
    d = new_deputy(SHORT_PREPUBLISH)
    c = d.add_client("rot-svc", "client_secret_basic", audiences=[API])
    d.start()
    tok_a = get_token(d, c)
    kid_a = jwt_parts(tok_a)[0]["kid"]
    # Make sure the rotation happens in a later second than the first key's
    # creation (same-second rotation is covered by its own test below).
    time.sleep(1.1)
    rot = d.cli("keys", "rotate")
    kid_b = rot["kid"]
    assert kid_b != kid_a
    assert rot["activates_at"] <= int(time.time()) + 1

    kids = wait_for(lambda: {k["kid"] for k in d.jwks()["keys"]} >= {kid_a, kid_b} or None)
    assert kids, f"JWKS does not list both keys: {d.jwks()}"
    published = d.jwks()["keys"]
    # Two generations, each a P-256 and an RSA key.
    assert len(published) == 4
    assert len({k["kid"] for k in published}) == 4
    assert rot["rsa_kid"] in {k["kid"] for k in published}

    tok_b = wait_for(lambda: (lambda t: t if jwt_parts(t)[0]["kid"] == kid_b else None)(get_token(d, c)),
                     timeout=8)
    assert tok_b, "new tokens are not signed by the rotated key"
    assert verify_jwcrypto(d, tok_b)["sub"] == "rot-svc"
    assert verify_pyjwt(d, tok_b)["sub"] == "rot-svc"
    # the old token still verifies against the published set
    assert verify_jwcrypto(d, tok_a)["sub"] == "rot-svc"
    assert verify_pyjwt(d, tok_a)["sub"] == "rot-svc"

    states = {k["kid"]: k["state"] for k in d.cli("keys", "list") if k["alg"] == "ES256"}
    assert states == {kid_a: "retired", kid_b: "active"}


def test_same_second_rotation_activates_the_new_key(new_deputy):
    """Of two keys rotated in the same second (so activating in the same
    second), the NEW one (the later `serial`, creation order) becomes the
    signing key, with its RSA key (checked several times on fresh key dirs:
    the order must not depend on the random kid). The two rotations run at
    once: each makes an RSA key, which takes too long for two in a row to
    share a second."""
    from concurrent.futures import ThreadPoolExecutor

    rotations = []
    for i in range(6):
        d = new_deputy(SHORT_PREPUBLISH, name=f"same-second-{i}")
        d.cli("keys", "list")  # the first generation, before the race
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(lambda _: d.cli("keys", "rotate"), range(2))
        rotations.append((d, first, second))
    same = [r for r in rotations if r[1]["activates_at"] == r[2]["activates_at"]]
    assert len(same) >= 3, "rotations did not land in the same second often enough"
    latest = max(max(r[1]["activates_at"], r[2]["activates_at"]) for r in rotations)
    while time.time() < latest + 1:
        time.sleep(0.1)
    failures = []
    for d, a, b in same:
        keys = d.cli("keys", "list")
        serial = {k["kid"]: k["serial"] for k in keys}
        newer = max((a, b), key=lambda r: serial[r["kid"]])
        active = [k["kid"] for k in keys if k["state"] == "active"]
        if active != [newer["kid"], newer["rsa_kid"]]:
            failures.append(f"newest {newer['kid']} but keys list says "
                            f"{[(k['kid'], k['state'], k['activates_at'], k['serial']) for k in keys]}")
    assert not failures, failures


def test_rotation_with_default_prepublish_rfc7517_s5(new_deputy):
    """Default key_prepublish (900 s): after rotate the JWKS lists both keys
    (within ~3 s) but tokens are still signed by the old key; keys list shows
    one active and one pending."""
    d = new_deputy()
    c = d.add_client("pre-svc", "client_secret_basic", audiences=[API])
    d.start()
    kid_a = jwt_parts(get_token(d, c))[0]["kid"]
    now = int(time.time())
    rot = d.cli("keys", "rotate")
    kid_b = rot["kid"]
    assert rot["state"] == "pending"
    assert now + 890 <= rot["activates_at"] <= now + 910
    ok = wait_for(lambda: len(d.jwks()["keys"]) == 4)
    assert ok, d.jwks()
    assert {k["kid"] for k in d.jwks()["keys"] if k["kty"] == "EC"} == {kid_a, kid_b}
    for _ in range(3):
        tok = get_token(d, c)
        assert jwt_parts(tok)[0]["kid"] == kid_a
        verify_jwcrypto(d, tok)
        time.sleep(0.3)
    states = {k["kid"]: k["state"] for k in d.cli("keys", "list")}
    assert {kid: states[kid] for kid in (kid_a, kid_b)} == {kid_a: "active", kid_b: "pending"}
    assert states[rot["rsa_kid"]] == "pending"
    assert sorted(states.values()) == ["active", "active", "pending", "pending"]


def test_private_key_files_are_not_world_readable(env):
    """Signing keys at rest: not readable by group/others."""
    d, _ = env
    sqlite_only("key files and their modes (PostgreSQL: test_private_keys_are_sealed_rows)")
    files = [p for p in d.keys_dir.iterdir() if p.is_file() and not p.name.startswith(".")]
    assert files
    for p in files:
        if p.suffix == ".pem":
            assert p.stat().st_mode & 0o077 == 0, (p, oct(p.stat().st_mode))


def test_private_keys_are_sealed_rows(env):
    """PostgreSQL: signing keys at rest are rows whose private key is sealed
    under the installation's key-encryption key, never a key in clear, and
    nothing is written to keys_dir. The sealed blob (AES-256-GCM: 12-byte
    nonce, ciphertext, 16-byte tag, the kid as associated data) opens with
    the KEK into the private half (PKCS#8) of the published key, and not under
    another kid, so a sealed key moved to another row is useless."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key

    d, _ = env
    if not d.is_pg:
        pytest.skip("PostgreSQL: keys are rows in the database")
    assert not d.keys_dir.exists() or list(d.keys_dir.iterdir()) == []
    rows = [line.split("|") for line in
            d.sql("SELECT kid, encode(sealed_private_key, 'hex') FROM signing_keys ORDER BY serial").splitlines()]
    published = {k["kid"]: k for k in d.jwks()["keys"]}
    assert rows and {kid for kid, _ in rows} <= set(published), (rows, published)
    kek = AESGCM(base64.b64decode(d.kek_file.read_text().strip()))
    for kid, sealed_hex in rows:
        sealed = bytes.fromhex(sealed_hex)
        assert b"PRIVATE KEY" not in sealed and b"-----BEGIN" not in sealed
        with pytest.raises(ValueError):
            load_der_private_key(sealed, password=None)
        nonce, body = sealed[:12], sealed[12:]
        with pytest.raises(InvalidTag):
            kek.decrypt(nonce, body, b"another-kid")
        opened = kek.decrypt(nonce, body, kid.encode())
        load = load_pem_private_key if opened.startswith(b"-----BEGIN") else load_der_private_key
        private = load(opened, password=None)
        numbers = private.public_key().public_numbers()
        if published[kid]["kty"] == "RSA":
            assert int.from_bytes(unb64url(published[kid]["n"]), "big") == numbers.n
            assert int.from_bytes(unb64url(published[kid]["e"]), "big") == numbers.e
            continue
        assert unb64url(published[kid]["x"]) == numbers.x.to_bytes(32, "big")
        assert unb64url(published[kid]["y"]) == numbers.y.to_bytes(32, "big")
