"""A strict third-party relying party, panva's certified `openid-client` (v6,
on oauth4webapi), signs a person in at deputy: discovery -> authorize -> login
-> consent -> code -> tokens -> userinfo -> refresh -> prompt=none -> logout.

openid-client itself validates what a relying party must (OIDC Core §3.1.3.5
token response, §3.1.3.7 ID token: JWS signature against jwks_uri, alg from
the metadata, iss, aud, azp, exp, iat, nonce, auth_time with max_age; RFC 9207
§2.4 iss; RFC 7636 PKCE; OIDC Core §5.3.2 userinfo sub). at_hash (§3.1.3.6)
is checked by the script, and again here with authlib.

The Node project is conformance/e2e (package.json + package-lock.json pinned);
`npm ci` runs when its node_modules is missing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest
with warnings.catch_warnings():
    # authlib.jose announces its move to joserfc; its OIDC CodeIDToken (with
    # at_hash validation) still builds on it.
    import authlib.deprecate  # noqa: F401  (installs its own "always" filter first)

    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt
    from authlib.oidc.core import CodeIDToken

from conftest import Deputy, free_port
from oidc_support import PASSWORD, add_app, add_user, left_half_hash

E2E = Path(__file__).resolve().parent / "e2e"


def ensure_node_modules():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the openid-client end-to-end test")
    if (E2E / "node_modules" / "openid-client" / "package.json").is_file():
        return
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=E2E, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"npm ci failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def run_rp(module_dir, id_token_alg: str | None = None):
    """Run the openid-client script once against a fresh deputy whose client
    `rp-web` is registered with `id_token_alg` (deputy's default if None)."""
    ensure_node_modules()
    d = Deputy(module_dir / f"deputy-{id_token_alg or 'default'}")
    user = add_user(d, "alice", email="a@x.example", name="Alice A")
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}/cb"
    bye = f"http://127.0.0.1:{port}/bye"
    if id_token_alg is None:
        add_app(d, "rp-web", name="Notes Web", redirect_uris=[redirect_uri], post_logout=[bye])
    else:
        d.cli("client", "add", "--id", "rp-web", "--kind", "app", "--auth", "none", "--name", "Notes Web",
              "--redirect-uri", redirect_uri, "--post-logout-redirect-uri", bye, "--scope", "notes:read",
              "--id-token-alg", id_token_alg)
    d.start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DEPUTY_ISSUER": d.issuer,
        "RP_CLIENT_ID": "rp-web",
        "RP_REDIRECT_URI": redirect_uri,
        "RP_POST_LOGOUT_REDIRECT_URI": bye,
        "RP_USERNAME": "alice",
        "RP_PASSWORD": PASSWORD,
    }
    t0 = time.monotonic()
    r = subprocess.run(["node", str(E2E / "rp.mjs")], cwd=E2E, env=env, capture_output=True, text=True,
                       timeout=120)
    elapsed = time.monotonic() - t0
    last = (r.stdout.strip().splitlines() or ["{}"])[-1]
    try:
        out = json.loads(last)
    except json.JSONDecodeError:
        out = {"error": "no JSON", "stdout": r.stdout[-2000:]}
    out["_exit"] = r.returncode
    out["_stderr"] = r.stderr[-2000:]
    out["_elapsed"] = elapsed
    return d, user, redirect_uri, bye, out


@pytest.fixture(scope="module")
def rp_run(module_dir):
    """Run the openid-client script once against a fresh deputy; every test
    below checks one part of its JSON report."""
    run = run_rp(module_dir)
    yield run
    run[0].stop()


def test_oidc_e2e_rs256_client_validated_by_openid_client_defaults_oidc_core_s15_1(module_dir):
    """OIDC Core §15.1 (OPs MUST support RS256) and OIDC Registration §2
    (RS256 is the default id_token_signed_response_alg): openid-client,
    given no algorithm for the client, validates the RS256 ID token of a
    client registered `--id-token-alg RS256` (signature against /jwks, iss,
    aud, nonce), refreshes, and logs out with that ID token as the hint."""
    d, user, _, _, out = run_rp(module_dir, "RS256")
    try:
        out = ok(out)
        first = out["first"]
        header = json.loads(base64.urlsafe_b64decode(first["tokens"]["id_token"].split(".")[0] + "=="))
        assert header["alg"] == "RS256", header
        assert first["id_token_claims"]["sub"] == user["id"]
        assert first["at_hash_ok"] is True
        assert out["refresh"]["id_token_sub"] == user["id"]
        assert out["after_logout"]["error"] == "login_required", out["after_logout"]
    finally:
        d.stop()


def ok(out: dict) -> dict:
    assert out["_exit"] == 0 and "error" not in out, (
        f"openid-client refused deputy: {json.dumps({k: v for k, v in out.items() if k != '_elapsed'})[:3000]}")
    return out


def test_oidc_e2e_discovery_accepted_by_openid_client(rp_run):
    """OIDC Discovery 1.0 §4.3 / RFC 8414 §3.3: issuer in the metadata is
    identical to the one the RP was configured with (openid-client refuses
    otherwise); endpoints are the advertised ones; RFC 9207 §3 advertised."""
    d, _, _, _, out = rp_run
    out = ok(out)
    # OIDC Discovery 1.0 §3 (userinfo_endpoint) and RP-Initiated Logout 1.0
    # §2.1 (end_session_endpoint, REQUIRED when logout is offered): openid-client
    # needs both for fetchUserInfo and buildEndSessionUrl.
    assert out["patched_metadata"] == [], (
        f"/.well-known/openid-configuration lacks {out['patched_metadata']}; got {out['discovery']}")
    assert out["discovery"] == {
        "issuer": d.issuer,
        "authorization_endpoint": d.url("/authorize"),
        "token_endpoint": d.url("/token"),
        "userinfo_endpoint": d.url("/userinfo"),
        "end_session_endpoint": d.url("/logout"),
        "jwks_uri": d.url("/jwks"),
        "iss_parameter": True,
    }


def test_oidc_e2e_code_flow_passes_openid_client_validation(rp_run):
    """OIDC Core §3.1.2.5 / RFC 9207 §2: the callback carries code, state, iss
    (and nothing else); §3.1.3.3: token response with token_type Bearer,
    expires_in, scope, refresh_token; openid-client validated the ID token
    (signature via JWKS, iss, aud, nonce, exp)."""
    d, user, _, _, out = rp_run
    out = ok(out)
    first = out["first"]
    assert out["steps"][:3] == ["discovery", "login page", "consent page"], out["steps"]
    assert first["callback_keys"] == ["code", "iss", "state"]
    assert first["callback_iss"] == d.issuer
    assert first["state_matched"] is True
    t = first["tokens"]
    assert t["token_type"].lower() == "bearer"
    assert t["expires_in"] > 0
    assert set(t["scope"].split(" ")) == {"openid", "profile", "email"}
    assert t["has_refresh_token"] is True
    c = first["id_token_claims"]
    assert c["iss"] == d.issuer
    assert c["aud"] == "rp-web"
    assert c["azp"] == "rp-web"
    assert c["sub"] == user["id"]
    assert c["nonce"] == first["nonce"]
    assert c["amr"] == ["pwd"]
    assert c["iat"] <= c["exp"] and abs(c["iat"] - time.time()) < 120
    assert isinstance(c["auth_time"], int) and c["auth_time"] <= c["iat"]


def test_oidc_e2e_at_hash_matches_access_token(rp_run):
    """OIDC Core §3.1.3.6 / §3.1.3.8: at_hash = base64url(left half of
    SHA-256(access_token)) for ES256; checked in Node and again here."""
    _, _, _, _, out = rp_run
    out = ok(out)
    first = out["first"]
    assert first["at_hash_ok"] is True
    assert first["id_token_claims"]["at_hash"] == left_half_hash(first["tokens"]["access_token"])


def test_oidc_e2e_id_token_independently_validated_by_authlib(rp_run):
    """OIDC Core §3.1.3.7 steps 2-11 and §3.1.3.8, with a second library
    (authlib's CodeIDToken): ES256 signature against /jwks, iss, aud, azp,
    exp, iat, nonce, at_hash."""
    d, _, _, _, out = rp_run
    out = ok(out)
    first = out["first"]
    keys = JsonWebKey.import_key_set(d.jwks())
    claims = jwt.decode(
        first["tokens"]["id_token"], keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": d.issuer},
                        "aud": {"essential": True, "value": "rp-web"}},
        claims_params={"nonce": first["nonce"], "client_id": "rp-web",
                       "access_token": first["tokens"]["access_token"]},
    )
    claims.validate(leeway=30)
    assert claims.header["alg"] == "ES256"
    # A modified access token must fail at_hash: the check above is live.
    at = first["tokens"]["access_token"]
    tampered = at[:-2] + ("AA" if not at.endswith("AA") else "BB")
    bad = jwt.decode(first["tokens"]["id_token"], keys, claims_cls=CodeIDToken,
                     claims_params={"nonce": first["nonce"], "client_id": "rp-web", "access_token": tampered})
    with pytest.raises(Exception, match="at_hash"):  # authlib's or joserfc's InvalidClaimError
        bad.validate(leeway=30)


def test_oidc_e2e_userinfo_through_openid_client(rp_run):
    """OIDC Core §5.3.2 / §5.4: userinfo sub equals the ID token's (checked by
    openid-client); profile and email claims; email_verified false."""
    _, user, _, _, out = rp_run
    out = ok(out)
    assert out["userinfo"] == {
        "sub": user["id"],
        "preferred_username": "alice",
        "name": "Alice A",
        "email": "a@x.example",
        "email_verified": False,
    }


def test_oidc_e2e_refresh_through_openid_client(rp_run):
    """RFC 6749 §6 / RFC 9700 §4.14.2: refresh succeeds, the refresh token
    rotates; OIDC Core §12.2: a refreshed ID token keeps the same sub (and
    openid-client validated it like the first)."""
    _, user, _, _, out = rp_run
    out = ok(out)
    r = out["refresh"]
    assert r["token_type"].lower() == "bearer"
    assert r["rotated"] is True
    assert r["new_access_token"] is True
    assert r["id_token_sub"] in (None, user["id"])


def test_oidc_e2e_prompt_none_with_session(rp_run):
    """OIDC Core §3.1.2.1 prompt=none: with a live session and consent given,
    a code comes back without any page; max_age makes openid-client require
    auth_time, which stays the original login's (no new login happened)."""
    _, _, _, _, out = rp_run
    out = ok(out)
    s = out["silent"]
    assert s["same_sub"] is True
    assert s["auth_time_same"] is True
    assert s["at_hash_ok"] is True
    # No login or consent page was shown for the silent request.
    assert out["steps"][s["steps_before"] - 1:] == ["refresh", "silent", "logout", "after logout"], out["steps"]


def test_oidc_e2e_logout_and_login_required(rp_run):
    """OIDC RP-Initiated Logout 1.0 §2-§3: id_token_hint + registered
    post_logout_redirect_uri + state -> redirect there with state, session
    cookie cleared; afterwards prompt=none -> login_required (OIDC Core
    §3.1.2.6), surfaced by openid-client as an authorization response error."""
    _, _, _, bye, out = rp_run
    out = ok(out)
    lo = out["logout"]
    assert lo["status"] in (302, 303)
    assert lo["location_base"] == bye
    assert lo["state_matched"] is True
    assert lo["session_cookie_left"] is False
    assert out["after_logout"]["error"] == "login_required", out["after_logout"]


def test_oidc_e2e_openid_client_rejects_forged_iss(rp_run):
    """RFC 9207 §2.4: the RP library in use does refuse a response whose iss is
    not deputy's, so the checks above are real."""
    _, _, _, _, out = rp_run
    out = ok(out)
    assert out["forged_iss_rejected"] not in (False, None)

