"""POST /token with client_credentials and client secrets: RFC 6749 §2.3.1,
§3.2, §3.3, §4.4, §5.1, §5.2; RFC 8707 §2; RFC 9068 §2."""

import time

import pytest
import requests

from conftest import (FORM, ClientKey, Deputy, assert_oauth_error, assert_token_ok, assertion_form,
                      basic_auth, jwt_parts, make_assertion)

API = "https://api.example/"
OTHER = "https://other.example/"


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir)
    c = {}
    c["basic"] = d.add_client("tok-basic", "client_secret_basic", scopes=["read", "write"],
                              audiences=[API, OTHER])
    c["post"] = d.add_client("tok-post", "client_secret_post", scopes=["read"], audiences=[API])
    c["colon"] = d.add_client("tok:colon%id", "client_secret_basic", scopes=["read"], audiences=[API])
    c["nocc"] = d.add_client("tok-exchange-only", "client_secret_basic", kind="agent",
                             grants=["token-exchange"], audiences=[API])
    key = ClientKey("ES256")
    d.add_client("tok-jwt", "private_key_jwt", key=key)
    d.start()
    yield d, c, key
    d.stop()


def cc(**extra):
    return {"grant_type": "client_credentials", **extra}


def basic(c):
    return basic_auth(c["id"], c["client_secret"])


# ---------------------------------------------------------------- happy paths


def test_client_secret_basic_issues_token_rfc6749_s4_4_3(env):
    """RFC 6749 §4.4.3 / §5.1: 200 with access_token, token_type Bearer,
    expires_in, scope; Cache-Control no-store and Pragma no-cache; no refresh
    token for client_credentials."""
    d, c, _ = env
    r = d.token(cc(), headers=basic(c["basic"]))
    body = assert_token_ok(r)
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.headers.get("Pragma", "").lower() == "no-cache"
    assert body["expires_in"] == 300
    assert set(body["scope"].split(" ")) == {"read", "write"}
    assert "refresh_token" not in body
    assert "id_token" not in body


def test_client_secret_post_issues_token_rfc6749_s2_3_1(env):
    """RFC 6749 §2.3.1: credentials in the request body."""
    d, c, _ = env
    r = d.token(cc(client_id=c["post"]["id"], client_secret=c["post"]["client_secret"]))
    body = assert_token_ok(r)
    assert body["scope"] == "read"


def test_basic_credentials_are_form_urlencoded_rfc6749_s2_3_1(env):
    """RFC 6749 §2.3.1: client id and secret are application/x-www-form-urlencoded
    before Basic encoding; an id containing ':' and '%' must round-trip."""
    d, c, _ = env
    r = d.token(cc(), headers=basic(c["colon"]))
    body = assert_token_ok(r)
    assert jwt_parts(body["access_token"])[1]["client_id"] == "tok:colon%id"


def test_access_token_claims_rfc9068_s2(env):
    """RFC 9068 §2.1/§2.2: typ at+jwt, alg ES256, kid; claims iss, sub = client_id
    = the client, aud (string), exp, iat (integers), jti, scope."""
    d, c, _ = env
    before = int(time.time())
    body = assert_token_ok(d.token(cc(), headers=basic(c["basic"])))
    after = int(time.time())
    header, claims = jwt_parts(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert header["kid"] in {k["kid"] for k in d.jwks()["keys"]}
    assert claims["iss"] == d.issuer
    assert claims["sub"] == "tok-basic"
    assert claims["client_id"] == "tok-basic"
    assert claims["aud"] == API
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert before - 1 <= claims["iat"] <= after + 1
    assert claims["exp"] - claims["iat"] == 300
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert set(claims["scope"].split(" ")) == {"read", "write"}


def test_each_token_has_a_fresh_jti_rfc7519_s4_1_7(env):
    """RFC 7519 §4.1.7 / RFC 9068 §2.2: jti unique per token."""
    d, c, _ = env
    jtis = set()
    for _ in range(3):
        body = assert_token_ok(d.token(cc(), headers=basic(c["basic"])))
        jtis.add(jwt_parts(body["access_token"])[1]["jti"])
    assert len(jtis) == 3


def test_scope_subset_rfc6749_s3_3(env):
    """RFC 6749 §3.3: a narrower requested scope is granted as asked."""
    d, c, _ = env
    body = assert_token_ok(d.token(cc(scope="read"), headers=basic(c["basic"])))
    assert body["scope"] == "read"
    assert jwt_parts(body["access_token"])[1]["scope"] == "read"


def test_scope_outside_registration_is_invalid_scope_rfc6749_s5_2(env):
    """RFC 6749 §5.2 invalid_scope: requested scope exceeds the client's."""
    d, c, _ = env
    assert_oauth_error(d.token(cc(scope="read admin"), headers=basic(c["basic"])), 400, "invalid_scope")
    assert_oauth_error(d.token(cc(scope="admin"), headers=basic(c["basic"])), 400, "invalid_scope")
    # RFC 6749 §3.3 grammar: only spaces is no scope-token at all, not "omitted"
    assert_oauth_error(d.token(cc(scope="   "), headers=basic(c["basic"])), 400, "invalid_scope")


def test_default_audience_is_first_registered(env):
    """Omitted resource/audience: the first registered audience."""
    d, c, _ = env
    body = assert_token_ok(d.token(cc(), headers=basic(c["basic"])))
    assert jwt_parts(body["access_token"])[1]["aud"] == API


def test_resource_parameter_selects_audience_rfc8707_s2(env):
    """RFC 8707 §2: the token is audience-restricted to the requested resource."""
    d, c, _ = env
    body = assert_token_ok(d.token(cc(resource=OTHER), headers=basic(c["basic"])))
    assert jwt_parts(body["access_token"])[1]["aud"] == OTHER


def test_audience_parameter_selects_audience(env):
    d, c, _ = env
    body = assert_token_ok(d.token(cc(audience=OTHER), headers=basic(c["basic"])))
    assert jwt_parts(body["access_token"])[1]["aud"] == OTHER


@pytest.mark.parametrize("params", [
    {"resource": "https://evil.example/"},
    {"audience": "https://evil.example/"},
    {"resource": "api.example/relative"},
    {"resource": "https://api.example/#frag"},
])
def test_unregistered_or_malformed_target_is_invalid_target_rfc8707_s2(env, params):
    """RFC 8707 §2: resource must be an absolute URI without fragment the client
    may obtain; otherwise 400 invalid_target."""
    d, c, _ = env
    assert_oauth_error(d.token(cc(**params), headers=basic(c["basic"])), 400, "invalid_target")


# ---------------------------------------------------------------- client authentication


def test_wrong_secret_basic_is_401_with_www_authenticate_rfc6749_s5_2(env):
    """RFC 6749 §5.2: invalid_client, 401 with WWW-Authenticate when the client
    used the Authorization header."""
    d, c, _ = env
    r = d.token(cc(), headers=basic_auth("tok-basic", "x" * 43))
    assert_oauth_error(r, 401, "invalid_client")
    assert r.headers.get("WWW-Authenticate", "").lower().startswith("basic")


def test_unknown_client_basic_is_same_401_rfc6749_s5_2(env):
    """Unknown client and bad credential are indistinguishable."""
    d, c, _ = env
    r1 = d.token(cc(), headers=basic_auth("no-such-client", "x" * 43))
    r2 = d.token(cc(), headers=basic_auth("tok-basic", "y" * 43))
    b1 = assert_oauth_error(r1, 401, "invalid_client")
    b2 = assert_oauth_error(r2, 401, "invalid_client")
    assert b1 == b2
    assert r1.headers.get("WWW-Authenticate", "").lower().startswith("basic")


def test_unencoded_basic_id_with_colon_fails_rfc6749_s2_3_1(env):
    """The first ':' separates id and secret; a raw 'tok:colon%id' is a different id."""
    import base64
    d, c, _ = env
    raw = f"tok:colon%id:{c['colon']['client_secret']}".encode()
    r = d.token(cc(), headers={"Authorization": "Basic " + base64.b64encode(raw).decode()})
    assert_oauth_error(r, 401, "invalid_client")


def test_wrong_secret_post_is_401(env):
    d, c, _ = env
    r = d.token(cc(client_id="tok-post", client_secret="z" * 43))
    assert_oauth_error(r, 401, "invalid_client")


def test_unknown_client_post_is_401(env):
    d, c, _ = env
    assert_oauth_error(d.token(cc(client_id="nobody", client_secret="z" * 43)), 401, "invalid_client")


def test_secret_without_client_id_is_401(env):
    d, c, _ = env
    assert_oauth_error(d.token(cc(client_secret=c["post"]["client_secret"])), 401, "invalid_client")


def test_no_client_authentication_is_401(env):
    d, c, _ = env
    assert_oauth_error(d.token(cc()), 401, "invalid_client")


def test_basic_client_using_post_is_401(env):
    """A client registered for client_secret_basic may not use client_secret_post."""
    d, c, _ = env
    r = d.token(cc(client_id="tok-basic", client_secret=c["basic"]["client_secret"]))
    assert_oauth_error(r, 401, "invalid_client")


def test_post_client_using_basic_is_401(env):
    """A client registered for client_secret_post may not use HTTP Basic."""
    d, c, _ = env
    r = d.token(cc(), headers=basic(c["post"]))
    assert_oauth_error(r, 401, "invalid_client")
    assert r.headers.get("WWW-Authenticate", "").lower().startswith("basic")


def test_basic_and_post_secret_together_is_invalid_request_rfc6749_s2_3(env):
    """RFC 6749 §2.3: the client MUST NOT use more than one authentication method."""
    d, c, _ = env
    r = d.token(cc(client_id="tok-basic", client_secret=c["basic"]["client_secret"]),
                headers=basic(c["basic"]))
    assert_oauth_error(r, 400, "invalid_request")


def test_basic_and_assertion_together_is_invalid_request_rfc6749_s2_3(env):
    """RFC 6749 §2.3 with RFC 7523 §2.2: Basic + client_assertion refused."""
    d, c, key = env
    a = make_assertion(key, "tok-jwt", d.issuer)
    r = d.token(assertion_form(a), headers=basic(c["basic"]))
    assert_oauth_error(r, 400, "invalid_request")


def test_assertion_and_post_secret_together_is_invalid_request_rfc6749_s2_3(env):
    d, c, key = env
    a = make_assertion(key, "tok-jwt", d.issuer)
    r = d.token(assertion_form(a, client_id="tok-post", client_secret=c["post"]["client_secret"]))
    assert_oauth_error(r, 400, "invalid_request")


def test_client_secret_is_43_chars(env):
    d, c, _ = env
    for k in ("basic", "post", "colon"):
        s = c[k]["client_secret"]
        assert len(s) == 43
        assert all(ch.isalnum() or ch in "-_" for ch in s)


# ---------------------------------------------------------------- grant and request errors


def test_client_not_registered_for_grant_is_unauthorized_client_rfc6749_s5_2(env):
    """RFC 6749 §5.2 unauthorized_client."""
    d, c, _ = env
    assert_oauth_error(d.token(cc(), headers=basic(c["nocc"])), 400, "unauthorized_client")


@pytest.mark.parametrize("grant", ["password", "implicit", "urn:example:made-up",
                                   "urn:ietf:params:oauth:grant-type:saml2-bearer"])
def test_unsupported_grant_type_rfc6749_s5_2(env, grant):
    """RFC 6749 §5.2 unsupported_grant_type."""
    d, c, _ = env
    r = d.token({"grant_type": grant}, headers=basic(c["basic"]))
    assert_oauth_error(r, 400, "unsupported_grant_type")


def test_missing_grant_type_is_invalid_request_rfc6749_s5_2(env):
    d, c, _ = env
    assert_oauth_error(d.token({"scope": "read"}, headers=basic(c["basic"])), 400, "invalid_request")


@pytest.mark.parametrize("body", [
    "grant_type=client_credentials&scope=read&scope=write",
    "grant_type=client_credentials&grant_type=client_credentials",
    "grant_type=client_credentials&resource=https%3A%2F%2Fapi.example%2F&resource=https%3A%2F%2Fother.example%2F",
])
def test_repeated_parameter_is_invalid_request_rfc6749_s3_2(env, body):
    """RFC 6749 §3.1/§3.2: request parameters MUST NOT be included more than once."""
    d, c, _ = env
    r = d.token(body, headers={**basic(c["basic"]), "Content-Type": FORM})
    assert_oauth_error(r, 400, "invalid_request")


def test_json_body_is_invalid_request_rfc6749_s3_2(env):
    """RFC 6749 §3.2: parameters use application/x-www-form-urlencoded."""
    d, c, _ = env
    r = d.session.post(d.token_endpoint, json={"grant_type": "client_credentials"},
                       headers=basic(c["basic"]), timeout=10)
    assert_oauth_error(r, 400, "invalid_request")


def test_missing_content_type_is_invalid_request(env):
    d, c, _ = env
    req = requests.Request("POST", d.token_endpoint, data=b"grant_type=client_credentials",
                           headers=basic(c["basic"])).prepare()
    req.headers.pop("Content-Type", None)
    r = d.session.send(req, timeout=10)
    assert_oauth_error(r, 400, "invalid_request")


def test_oversized_body_is_413(env):
    """A body over 64 KiB is refused before parsing."""
    d, c, _ = env
    body = "grant_type=client_credentials&pad=" + "a" * (65 * 1024)
    r = d.token(body, headers={**basic(c["basic"]), "Content-Type": FORM})
    assert r.status_code == 413
    assert "access_token" not in r.text


def test_invalid_utf8_is_400(env):
    d, c, _ = env
    r = d.token(b"grant_type=client_credentials&scope=%FF%FE", headers={**basic(c["basic"]), "Content-Type": FORM})
    assert_oauth_error(r, 400, "invalid_request")


def test_get_token_is_405_rfc6749_s3_2(env):
    """RFC 6749 §3.2: the client MUST use POST."""
    d, c, _ = env
    r = d.session.get(d.token_endpoint + "?grant_type=client_credentials", headers=basic(c["basic"]), timeout=10)
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST"  # RFC 9110 §15.5.6
    assert "access_token" not in r.text


def test_query_parameters_do_not_authenticate(env):
    """RFC 6749 §2.3.1: credentials MUST NOT be in the request URI."""
    d, c, _ = env
    r = d.session.post(d.token_endpoint + f"?client_id=tok-post&client_secret={c['post']['client_secret']}",
                       data={"grant_type": "client_credentials"}, timeout=10)
    assert_oauth_error(r, 401, "invalid_client")


def test_error_responses_carry_no_store_rfc6749_s5_2(env):
    """RFC 6749 §5.1/§5.2 responses are JSON with Cache-Control: no-store."""
    d, c, _ = env
    for r in (d.token(cc(), headers=basic_auth("tok-basic", "bad")),
              d.token({"grant_type": "password"}, headers=basic(c["basic"])),
              d.token(cc(scope="nope"), headers=basic(c["basic"]))):
        assert r.status_code in (400, 401)
        assert r.headers["Cache-Control"].lower() == "no-store"
        assert r.headers["Content-Type"].split(";")[0] == "application/json"


# ---------------------------------------------------------------- encoding details


def test_empty_parameter_is_treated_as_omitted_rfc6749_s3_1(env):
    """RFC 6749 §3.1: parameters sent without a value MUST be treated as if
    they were omitted (empty scope = default scope; empty client_secret is no
    second authentication method)."""
    d, c, _ = env
    body = assert_token_ok(d.token("grant_type=client_credentials&scope=&resource=",
                                   headers={**basic(c["basic"]), "Content-Type": FORM}))
    assert set(body["scope"].split(" ")) == {"read", "write"}
    assert_token_ok(d.token("grant_type=client_credentials&client_secret=",
                            headers={**basic(c["basic"]), "Content-Type": FORM}))


def test_form_content_type_with_utf8_charset_is_accepted(env):
    d, c, _ = env
    r = d.token("grant_type=client_credentials",
                headers={**basic(c["basic"]), "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
    assert_token_ok(r)


@pytest.mark.parametrize("scheme", ["basic", "BASIC"])
def test_basic_scheme_is_case_insensitive_rfc7617_s2(env, scheme):
    """RFC 7617 §2 / RFC 7235 §2.1: the auth-scheme is case-insensitive."""
    d, c, _ = env
    value = basic(c["basic"])["Authorization"].split(" ", 1)[1]
    assert_token_ok(d.token(cc(), headers={"Authorization": f"{scheme} {value}"}))


@pytest.mark.parametrize("value", ["Basic !!!notbase64", "Basic " + "Zm9vYmFy", "Basic", "Basic OnNlY3JldA=="])
def test_malformed_basic_header_is_401_rfc6749_s5_2(env, value):
    """RFC 6749 §5.2: a client that attempted HTTP Basic (undecodable, colon-less,
    credential-less or empty-id) gets 401 invalid_client AND a WWW-Authenticate
    header matching the scheme it used."""
    d, _, _ = env
    r = d.token(cc(), headers={"Authorization": value})
    assert_oauth_error(r, 401, "invalid_client")
    assert r.headers.get("WWW-Authenticate", "").lower().startswith("basic")


def test_malformed_scope_is_invalid_scope_rfc6749_s3_3(env):
    """RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )."""
    d, c, _ = env
    for bad in ('read"', "re\\ad", "réad"):
        assert_oauth_error(d.token(cc(scope=bad), headers=basic(c["basic"])), 400, "invalid_scope")


def test_resource_and_audience_disagree_is_invalid_target_rfc8707_s2(env):
    d, c, _ = env
    r = d.token(cc(resource=API, audience=OTHER), headers=basic(c["basic"]))
    assert_oauth_error(r, 400, "invalid_target")


def test_grant_type_is_case_sensitive_rfc6749_s4_4_2(env):
    d, c, _ = env
    r = d.token({"grant_type": "Client_Credentials"}, headers=basic(c["basic"]))
    assert_oauth_error(r, 400, "unsupported_grant_type")


def test_oversized_chunked_body_is_413(env):
    """The 64 KiB cap also holds without a Content-Length (chunked upload)."""
    d, c, _ = env

    def gen():
        yield b"grant_type=client_credentials&pad="
        for _ in range(80):
            yield b"a" * 1024

    r = d.session.post(d.token_endpoint, data=gen(), headers={**basic(c["basic"]), "Content-Type": FORM},
                       timeout=10)
    assert r.status_code == 413
    assert "access_token" not in r.text
