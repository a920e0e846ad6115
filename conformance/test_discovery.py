"""Metadata (RFC 8414, OpenID Connect Discovery 1.0), JWKS (RFC 7517/7638),
health endpoints, and "everything advertised actually works"."""

import socket

import pytest
from jwcrypto import jwk

from conftest import (ClientKey, Deputy, assert_oauth_error, assert_token_ok, assertion_form,
                      basic_auth, jwt_parts, make_assertion)

API = "https://api.example/"

KNOWN_GRANTS = {
    "authorization_code",
    "client_credentials",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:openid:params:grant-type:ciba",  # CIBA Core §4 (test_ciba.py)
}
KNOWN_AUTH_METHODS = {"private_key_jwt", "client_secret_basic", "client_secret_post", "none"}


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir)
    clients = {}
    clients["basic"] = d.add_client("disc-basic", "client_secret_basic")
    clients["post"] = d.add_client("disc-post", "client_secret_post")
    keys = {}
    for alg in ("ES256", "RS256", "PS256", "EdDSA"):
        keys[alg] = ClientKey(alg)
        d.add_client(f"disc-{alg.lower()}", "private_key_jwt", key=keys[alg], alg=alg)
    d.start()
    yield d, clients, keys
    d.stop()


def _metadata(d, path):
    r = d.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    return r.json()


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server"])
def test_metadata_required_fields_rfc8414_s2_s3(env, path):
    """RFC 8414 §2/§3.2 and OIDC Discovery §3: issuer, token_endpoint, jwks_uri,
    response_types_supported present; issuer identical to the configured issuer
    (RFC 8414 §3.3); endpoints derived from it."""
    d, _, _ = env
    m = _metadata(d, path)
    assert m["issuer"] == d.issuer
    assert m["token_endpoint"] == d.issuer + "/token"
    assert m["jwks_uri"] == d.issuer + "/jwks"
    assert "response_types_supported" in m
    assert isinstance(m["response_types_supported"], list)
    if "code" in m["response_types_supported"]:
        assert m.get("authorization_endpoint", "").startswith(d.issuer + "/")
    # RFC 8414 §2: the issuer has no query or fragment.
    assert "?" not in m["issuer"] and "#" not in m["issuer"]
    # RFC 8414 §2 response_modes_supported, Form Post Response Mode §2.
    assert m["response_modes_supported"] == ["query", "form_post"]


def test_both_metadata_documents_agree_rfc8414_s3(env):
    """RFC 8414 §3 / OIDC Discovery §4: the two well-known documents describe
    the same server."""
    d, _, _ = env
    a = _metadata(d, "/.well-known/openid-configuration")
    b = _metadata(d, "/.well-known/oauth-authorization-server")
    for k in ("issuer", "token_endpoint", "jwks_uri", "grant_types_supported",
              "token_endpoint_auth_methods_supported",
              "token_endpoint_auth_signing_alg_values_supported", "response_types_supported"):
        assert a[k] == b[k], k


def test_advertised_values_rfc8414_s2(env):
    """RFC 8414 §2: what this build advertises. client_credentials is served;
    only grants/methods this suite knows are listed; `none` is never a token
    endpoint signing alg (RFC 8414 §2)."""
    d, _, _ = env
    m = _metadata(d, "/.well-known/oauth-authorization-server")
    grants = m["grant_types_supported"]
    assert "client_credentials" in grants
    assert set(grants) <= KNOWN_GRANTS, grants
    methods = m["token_endpoint_auth_methods_supported"]
    assert {"private_key_jwt", "client_secret_basic", "client_secret_post"} <= set(methods)
    assert set(methods) <= KNOWN_AUTH_METHODS
    assert "none" not in methods or "code" in m["response_types_supported"]
    algs = m["token_endpoint_auth_signing_alg_values_supported"]
    assert set(algs) == {"ES256", "RS256", "PS256", "EdDSA"}
    assert "none" not in algs
    assert not any(a.startswith("HS") for a in algs)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "private_key_jwt"])
def test_every_advertised_auth_method_yields_a_token_rfc8414_s2(env, method):
    """RFC 8414 §2 token_endpoint_auth_methods_supported: each advertised
    method obtains a client_credentials token."""
    d, clients, keys = env
    m = _metadata(d, "/.well-known/oauth-authorization-server")
    assert method in m["token_endpoint_auth_methods_supported"]
    if method == "client_secret_basic":
        c = clients["basic"]
        r = d.token({"grant_type": "client_credentials"}, headers=basic_auth(c["id"], c["client_secret"]))
    elif method == "client_secret_post":
        c = clients["post"]
        r = d.token({"grant_type": "client_credentials", "client_id": c["id"],
                     "client_secret": c["client_secret"]})
    else:
        a = make_assertion(keys["ES256"], "disc-es256", m["token_endpoint"])
        r = d.token(assertion_form(a))
    assert_token_ok(r)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_every_advertised_signing_alg_yields_a_token_rfc8414_s2(env, alg):
    """RFC 8414 §2 token_endpoint_auth_signing_alg_values_supported: an
    assertion signed with each advertised alg (client registered with --alg)
    obtains a token; RFC 7523 §2.2."""
    d, _, keys = env
    m = _metadata(d, "/.well-known/oauth-authorization-server")
    assert alg in m["token_endpoint_auth_signing_alg_values_supported"]
    a = make_assertion(keys[alg], f"disc-{alg.lower()}", d.issuer)
    body = assert_token_ok(d.token(assertion_form(a)))
    _, claims = jwt_parts(body["access_token"])
    assert claims["sub"] == f"disc-{alg.lower()}"


def test_every_advertised_grant_is_served_rfc8414_s2(env):
    """RFC 8414 §2 grant_types_supported: client_credentials yields a token;
    no advertised grant is answered `unsupported_grant_type`."""
    d, clients, _ = env
    m = _metadata(d, "/.well-known/oauth-authorization-server")
    c = clients["basic"]
    for g in m["grant_types_supported"]:
        r = d.token({"grant_type": g}, headers=basic_auth(c["id"], c["client_secret"]))
        if g == "client_credentials":
            assert_token_ok(r)
        else:
            assert r.status_code < 500, (g, r.status_code, r.text)
            assert r.json().get("error") != "unsupported_grant_type", (g, r.text)


def test_jwks_document_rfc7517_s5(env):
    """RFC 7517 §5/§4 and RFC 7518 §6.2.1: the JWK Set lists the EC P-256 signing
    key, public members only, use=sig, alg=ES256, and (§6.3.1) the RSA key of
    its generation for RS256 ID tokens (OIDC Core §15.1); Cache-Control public
    max-age=300."""
    d, _, _ = env
    r = d.get("/jwks")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] in ("application/jwk-set+json", "application/json")
    assert r.headers["Cache-Control"].replace(" ", "") == "public,max-age=300"
    keys = r.json()["keys"]
    assert len(keys) == 2
    k, rsa = keys
    assert k["kty"] == "EC" and k["crv"] == "P-256"
    assert k["use"] == "sig" and k["alg"] == "ES256"
    assert set(k) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert rsa["kty"] == "RSA" and rsa["use"] == "sig" and rsa["alg"] == "RS256"
    assert set(rsa) == {"kty", "n", "e", "kid", "use", "alg"}
    for key in keys:
        for private in ("d", "p", "q", "dp", "dq", "qi", "k"):
            assert private not in key
        assert not jwk.JWK(**key).has_private


def test_jwks_kid_is_rfc7638_thumbprint(env):
    """RFC 7638 §3: the published kid equals the JWK SHA-256 thumbprint."""
    d, _, _ = env
    for k in d.jwks()["keys"]:
        assert k["kid"] == jwk.JWK(**k).thumbprint()


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints(env, path):
    """Operational endpoints answer 200."""
    d, _, _ = env
    assert d.get(path).status_code == 200


def test_unknown_path_is_404(env):
    d, _, _ = env
    assert d.get("/no-such-endpoint").status_code == 404


def test_public_client_cannot_use_client_credentials_rfc6749_s4_4(env):
    """RFC 6749 §4.4: the client credentials grant MUST only be used by
    confidential clients; a public client is answered 400 unauthorized_client."""
    d, _, _ = env
    d.add_client("disc-public", "none", kind="app", redirect_uris=["https://app.example/cb"])
    r = d.token({"grant_type": "client_credentials", "client_id": "disc-public"})
    assert_oauth_error(r, 400, "unauthorized_client")


def _raw(d, method: str, path: str) -> tuple[str, dict, bytes]:
    """One request on its own connection, read until the server closes it:
    (status line, headers, every byte after the header block)."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status, headers, body


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server",
                                  "/jwks", "/healthz", "/readyz"])
def test_head_on_public_documents_rfc9110_s9_3_2(env, path):
    """RFC 9110 §9.1/§9.3.2: a general-purpose server MUST support HEAD; the
    response has the same status and header fields as GET and no content."""
    d, _, _ = env
    get_status, get_headers, get_body = _raw(d, "GET", path)
    status, headers, body = _raw(d, "HEAD", path)
    assert (status, body) == ("HTTP/1.1 200 OK", b""), (status, body[:200])
    assert get_status == status and get_body
    same = {"content-type", "content-length", "cache-control"}
    assert {k: v for k, v in headers.items() if k in same} == \
        {k: v for k, v in get_headers.items() if k in same}
    assert int(headers["content-length"]) == len(get_body)
