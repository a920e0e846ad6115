"""How people, agents and clients get tokens from deputy, black box.

Everything goes over HTTP (requests) or through the `Deputy` CLI runner from
conftest; JOSE checks use jwcrypto and PyJWT, never deputy's code.

    sign_in(deputy, client_id, username, password, scope, client_auth=None,
            extra_params=None) -> tokens dict

`client_auth` is how the client authenticates at /token:
    None                       public client (`client_id` in the body)
    "secret"                   client_secret_basic with that secret
    ("basic", "secret")        the same
    ("post", "secret")         client_secret_post
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import secrets
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import requests
from jwcrypto import jwk, jws

from conftest import ClientKey, b64url, basic_auth, jwt_parts, sign_compact

REDIRECT_URI = "http://127.0.0.1/cb"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
AT_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
RT_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
ID_TYPE = "urn:ietf:params:oauth:token-type:id_token"
INACTIVE = {"active": False}

# Settings for servers these tests start: the login rate limit (10 posts per
# second per address by default) is not what they test, and sign_in() runs
# many sign-ins from one address. sign_in() still honours a 429 Retry-After.
NO_LOGIN_LIMIT = {"DEPUTY_RATE_LIMIT_LOGIN": "0"}


def settings(**extra) -> dict:
    """NO_LOGIN_LIMIT plus DEPUTY_* settings given as keyword arguments
    (e.g. settings(DEPUTY_REFRESH_GRACE="2"))."""
    return {**NO_LOGIN_LIMIT, **extra}


# --------------------------------------------------------------------------
# Setup through the CLI
# --------------------------------------------------------------------------


def add_user(deputy, username: str, password: str) -> dict:
    return deputy.cli("user", "add", "--username", username, "--password-stdin", input=password + "\n")


def add_client(deputy, client_id: str, *, kind: str = "app", auth: str = "none",
               grants=("authorization_code", "refresh_token"), scopes=("notes:read", "notes:write"),
               redirect_uris=(REDIRECT_URI,), audiences=()) -> dict:
    """`deputy client add`; returns its JSON (with `client_secret` for
    client_secret_basic / client_secret_post)."""
    args = ["client", "add", "--id", client_id, "--kind", kind, "--auth", auth]
    for u in redirect_uris:
        args += ["--redirect-uri", u]
    for g in grants:
        args += ["--grant", g]
    for s in scopes:
        args += ["--scope", s]
    for a in audiences:
        args += ["--audience", a]
    out = deputy.cli(*args)
    if auth in ("client_secret_basic", "client_secret_post"):
        assert isinstance(out.get("client_secret"), str) and out["client_secret"], out
    return out


def allow_delegation(deputy, actor: str, audience: str, scopes, *, max_lifetime: int | None = None,
                     max_depth: int | None = None, broker: str | None = None) -> dict:
    args = ["delegation", "allow", "--actor", actor, "--audience", audience]
    for s in scopes:
        args += ["--scope", s]
    if max_lifetime is not None:
        args += ["--max-lifetime", str(max_lifetime)]
    if max_depth is not None:
        args += ["--max-depth", str(max_depth)]
    if broker is not None:
        args += ["--broker", broker]
    return deputy.cli(*args)


# --------------------------------------------------------------------------
# Client authentication at the token, introspection and revocation endpoints
# --------------------------------------------------------------------------


def auth_request(client_id: str, client_auth, data: dict) -> tuple[dict, dict]:
    """(headers, body) for a request by `client_id` authenticating as `client_auth`."""
    data = dict(data)
    headers = {}
    if client_auth is None:
        data["client_id"] = client_id
    elif isinstance(client_auth, str):
        headers.update(basic_auth(client_id, client_auth))
    else:
        how, secret = client_auth
        if how == "basic":
            headers.update(basic_auth(client_id, secret))
        elif how == "post":
            data["client_id"] = client_id
            data["client_secret"] = secret
        else:
            raise ValueError(how)
    return headers, data


def post(deputy, path: str, client_id: str | None, client_auth, data: dict, **kw) -> requests.Response:
    """POST a form to `path` as `client_id` (client_id None: no authentication)."""
    if client_id is None:
        headers, body = {}, dict(data)
    else:
        headers, body = auth_request(client_id, client_auth, data)
    headers.update(kw.pop("headers", {}))
    kw.setdefault("timeout", 15)
    return requests.post(deputy.url(path), data=body, headers=headers, allow_redirects=False, **kw)


def refresh(deputy, client_id: str, refresh_token: str, client_auth=None, **extra) -> requests.Response:
    return post(deputy, "/token", client_id, client_auth,
                {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra})


def introspect(deputy, token: str, client_id: str, client_auth, headers: dict | None = None,
               **extra) -> requests.Response:
    return post(deputy, "/introspect", client_id, client_auth, {"token": token, **extra},
                headers=headers or {})


def introspect_json(deputy, token: str, client_id: str, client_auth, **extra) -> dict:
    r = introspect(deputy, token, client_id, client_auth, **extra)
    assert r.status_code == 200, f"introspection failed: {r.status_code} {r.text[:300]}"
    assert r.headers.get("Content-Type", "").split(";")[0].strip() == "application/json", r.headers
    return r.json()


def revoke(deputy, token: str, client_id: str, client_auth, headers: dict | None = None,
           **extra) -> requests.Response:
    return post(deputy, "/revoke", client_id, client_auth, {"token": token, **extra},
                headers=headers or {})


def exchange(deputy, client_id: str, client_auth, subject_token: str, *, subject_token_type: str = AT_TYPE,
             **extra) -> requests.Response:
    """RFC 8693 §2.1 token exchange request. `extra` entries with value None are left out."""
    data = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject_token,
            "subject_token_type": subject_token_type}
    data.update({k: v for k, v in extra.items() if v is not None})
    return post(deputy, "/token", client_id, client_auth, data)


# --------------------------------------------------------------------------
# Signing a person in (authorization code + PKCE, S256)
# --------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = b64url(secrets.token_bytes(32))
    challenge = b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    return verifier, challenge


def hidden_inputs(page: str) -> dict:
    """The hidden inputs of an HTML form (name -> value)."""
    out = {}
    for tag in re.findall(r"<input\b[^>]*>", page, flags=re.I):
        if not re.search(r'type="hidden"', tag, flags=re.I):
            continue
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            out[html.unescape(name.group(1))] = html.unescape(value.group(1)) if value else ""
    return out


class SignInError(AssertionError):
    pass


def authorize(deputy, client_id: str, username: str, password: str, scope: str,
              extra_params: dict | None = None, session: requests.Session | None = None,
              redirect_uri: str = REDIRECT_URI) -> tuple[str, str]:
    """Drive /authorize → /login → /consent in a browser-like session.
    Returns (code, code_verifier)."""
    s = session or requests.Session()
    verifier, challenge = pkce_pair()
    state = secrets.token_hex(8)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": secrets.token_hex(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra_params or {})
    r = s.get(deputy.url("/authorize"), params=params, allow_redirects=False, timeout=15)
    steps = 0
    while r.status_code == 200 and steps < 3:
        steps += 1
        fields = hidden_inputs(r.text)
        if "interaction" not in fields or "csrf" not in fields:
            raise SignInError(f"page without interaction/csrf: {r.text[:500]}")
        if 'name="password"' in r.text:
            fields.update(username=username, password=password)
            for _ in range(5):
                r = s.post(deputy.url("/login"), data=fields, allow_redirects=False, timeout=15)
                if r.status_code != 429:
                    break
                time.sleep(float(r.headers.get("Retry-After", "1")))
        else:
            fields["decision"] = "allow"
            r = s.post(deputy.url("/consent"), data=fields, allow_redirects=False, timeout=15)
    if r.status_code != 303:
        raise SignInError(f"sign-in did not end in a redirect: {r.status_code} {r.text[:500]}")
    loc = r.headers["Location"]
    parts = urlsplit(loc)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == redirect_uri, loc
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if "code" not in q:
        raise SignInError(f"authorization error: {q}")
    assert q.get("state") == state, q
    assert q.get("iss") == deputy.issuer, q
    return q["code"], verifier


def redeem(deputy, client_id: str, code: str, verifier: str, client_auth=None,
           redirect_uri: str = REDIRECT_URI, **extra) -> requests.Response:
    return post(deputy, "/token", client_id, client_auth, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "code_verifier": verifier, **extra})


def sign_in(deputy, client_id: str, username: str, password: str, scope: str, client_auth=None,
            extra_params: dict | None = None) -> dict:
    """A person signs in to `client_id` (fresh browser) and the client redeems
    the code: the token response as a dict (access_token, id_token when
    openid, refresh_token when the client may refresh, expires_in, scope)."""
    code, verifier = authorize(deputy, client_id, username, password, scope, extra_params)
    r = redeem(deputy, client_id, code, verifier, client_auth)
    if r.status_code != 200:
        raise SignInError(f"code redemption failed: {r.status_code} {r.text[:500]}")
    body = r.json()
    assert body.get("token_type") == "Bearer", body
    return body


# --------------------------------------------------------------------------
# DPoP proofs (RFC 9449 §4.2), made with jwcrypto
# --------------------------------------------------------------------------


class ProofKey:
    """A client's DPoP key pair; `proof()` signs a proof with any header or
    claim changed (`None` removes it)."""

    def __init__(self, alg: str = "ES256"):
        self.alg = alg
        self.key = ClientKey(alg, kid="")  # no kid: the proof carries the key itself

    @property
    def jkt(self) -> str:
        """RFC 7638 SHA-256 thumbprint, computed by jwcrypto."""
        return self.key.jwk.thumbprint()

    def public(self) -> dict:
        return self.key.public_dict()

    def proof(self, method: str, url: str, *, token: str | None = None, nonce: str | None = None,
              header: dict | None = None, signer: jwk.JWK | None = None, sign_alg: str | None = None,
              **over) -> str:
        h = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public()}
        c = {"jti": uuid.uuid4().hex, "htm": method, "htu": url, "iat": int(time.time())}
        if token is not None:
            c["ath"] = ath(token)
        if nonce is not None:
            c["nonce"] = nonce
        for src, dst in ((header or {}, h), (over, c)):
            for k, v in src.items():
                if v is None:
                    dst.pop(k, None)
                else:
                    dst[k] = v
        return sign_compact(h, c, signer or self.key.jwk, sign_alg or h.get("alg") or self.alg)


def dpop(proof: str) -> dict:
    """The request header that carries a proof (RFC 9449 §4.1)."""
    return {"DPoP": proof}


def ath(token: str) -> str:
    """RFC 9449 §4.2: base64url SHA-256 of the access token."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


# --------------------------------------------------------------------------
# Verifying deputy's JWTs with independent libraries
# --------------------------------------------------------------------------


def jwks_set(deputy) -> jwk.JWKSet:
    r = requests.get(deputy.url("/jwks"), timeout=10)
    assert r.status_code == 200, r.text
    return jwk.JWKSet.from_json(r.text)


def verify_jwcrypto(deputy, token: str, typ: str | None = "at+jwt") -> tuple[dict, dict]:
    """Verify a compact JWS against /jwks with jwcrypto; (header, claims)."""
    header, _ = jwt_parts(token)
    keyset = jwks_set(deputy)
    key = keyset.get_key(header["kid"])
    assert key is not None, f"kid {header.get('kid')} not in /jwks"
    obj = jws.JWS()
    obj.deserialize(token)
    obj.verify(key, alg=header["alg"])
    if typ is not None:
        assert header.get("typ") == typ, header
    return header, json.loads(obj.payload)


def verify_pyjwt(deputy, token: str, audience: str) -> dict:
    """Verify an access token with PyJWT (signature, exp, iss, aud)."""
    header = pyjwt.get_unverified_header(token)
    keyset = requests.get(deputy.url("/jwks"), timeout=10).json()
    match = [k for k in keyset["keys"] if k.get("kid") == header["kid"]]
    assert match, f"kid {header['kid']} not in /jwks"
    key = pyjwt.PyJWK(match[0]).key
    return pyjwt.decode(token, key, algorithms=[header["alg"]], audience=audience,
                        issuer=deputy.issuer, options={"require": ["exp", "iat", "iss", "aud", "sub"]})


def claims(token: str) -> dict:
    return jwt_parts(token)[1]


def now() -> int:
    return int(time.time())


__all__ = [
    "NO_LOGIN_LIMIT", "settings", "REDIRECT_URI", "TOKEN_EXCHANGE", "AT_TYPE", "JWT_TYPE", "RT_TYPE",
    "ID_TYPE", "INACTIVE",
    "add_user", "add_client", "allow_delegation", "auth_request", "post", "refresh", "introspect",
    "introspect_json", "revoke", "exchange", "pkce_pair", "authorize", "redeem", "sign_in",
    "ProofKey", "dpop", "ath", "jwks_set", "verify_jwcrypto", "verify_pyjwt", "claims", "now",
]
