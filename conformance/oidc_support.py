"""Helpers for the OpenID Connect login tests (test_oidc_*.py).

A `Browser` keeps its cookies by hand (parsed from every raw Set-Cookie
header, sent back in one Cookie header) and never follows redirects, so each
step of authorize -> login page -> POST /login -> consent page -> POST
/consent -> 303 to the client can be checked. `FormReader` pulls the forms out
of deputy's HTML pages with the standard library parser.

Nothing here imports or reuses deputy's own code.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from conftest import Deputy, LoopbackServer, b64url, basic_auth, reply

PASSWORD = "correct horse battery staple"
FORM = "application/x-www-form-urlencoded"
GENERIC_LOGIN_ERROR = "The username or password is incorrect."
HTML_SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "Cache-Control")
# Modules that post many login forms within a second from 127.0.0.1 turn the
# per-address login rate limit off (it has its own test with the default).
NO_LOGIN_RATE_LIMIT = {"DEPUTY_RATE_LIMIT_LOGIN": "0"}


# --------------------------------------------------------------------------
# PKCE (RFC 7636 §4.1, §4.2)
# --------------------------------------------------------------------------


def new_verifier() -> str:
    """43..128 unreserved characters; 32 random bytes give 43."""
    return b64url(os.urandom(32))


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def left_half_hash(value: str) -> str:
    """OIDC Core §3.1.3.6 at_hash for ES256: base64url of the left half of SHA-256."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])


# --------------------------------------------------------------------------
# HTML forms
# --------------------------------------------------------------------------


@dataclass
class HtmlForm:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)
    input_types: dict[str, str] = field(default_factory=dict)
    buttons: list[dict] = field(default_factory=list)

    def button(self, id_: str) -> dict:
        for b in self.buttons:
            if b.get("id") == id_:
                return b
        raise AssertionError(f"no button #{id_} in form {self.action}: {self.buttons}")


class FormReader(HTMLParser):
    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.forms: list[HtmlForm] = []
        self.ids: set[str] = set()
        self._text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "form":
            self.forms.append(HtmlForm(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and "name" in a:
            self.forms[-1].inputs[a["name"]] = a.get("value", "")
            self.forms[-1].input_types[a["name"]] = a.get("type", "text").lower()
        elif tag == "button" and self.forms:
            self.forms[-1].buttons.append(a)

    def handle_data(self, data):
        self._text.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._text).split())

    def form(self, action: str) -> HtmlForm:
        found = [f for f in self.forms if f.action == action]
        assert len(found) == 1, f"expected one form posting to {action}, got {[f.action for f in self.forms]}"
        return found[0]


# --------------------------------------------------------------------------
# A browser with a hand-kept cookie jar
# --------------------------------------------------------------------------


def raw_set_cookies(resp: requests.Response) -> list[str]:
    return list(resp.raw.headers.getlist("Set-Cookie"))


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    """(name, value, {lower-case attribute: value}) of one Set-Cookie header."""
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return name.strip(), value.strip(), attrs


class Browser:
    """Cookies kept by hand for one host; redirects never followed."""

    def __init__(self, d: Deputy):
        self.d = d
        self.cookies: dict[str, str] = {}
        self.http = requests.Session()
        self.http.trust_env = False
        # requests' own jar stays empty: every cookie goes through self.cookies.
        self.http.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))

    def _absorb(self, resp: requests.Response):
        for h in raw_set_cookies(resp):
            name, value, attrs = parse_set_cookie(h)
            if attrs.get("max-age") == "0" or value == "":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def _headers(self, extra: dict | None) -> dict:
        h = dict(extra or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return h

    def get(self, path_or_url: str, params=None, headers=None) -> requests.Response:
        url = path_or_url if "://" in path_or_url else self.d.url(path_or_url)
        r = self.http.get(url, params=params, headers=self._headers(headers), allow_redirects=False, timeout=15)
        self._absorb(r)
        return r

    def post(self, path: str, data, headers=None) -> requests.Response:
        h = {"Content-Type": FORM, **(headers or {})}
        body = data if isinstance(data, (str, bytes)) else urlencode(data)
        r = self.http.post(self.d.url(path), data=body, headers=self._headers(h), allow_redirects=False,
                           timeout=15)
        self._absorb(r)
        return r

    def close(self):
        self.http.close()


# --------------------------------------------------------------------------
# Authorization requests
# --------------------------------------------------------------------------


@dataclass
class AuthRequest:
    client_id: str
    redirect_uri: str | None
    scope: str = "openid"
    state: str | None = field(default_factory=lambda: uuid.uuid4().hex)
    nonce: str | None = field(default_factory=lambda: uuid.uuid4().hex)
    verifier: str = field(default_factory=new_verifier)
    extra: dict = field(default_factory=dict)

    def params(self) -> dict:
        p = {
            "response_type": "code",
            "client_id": self.client_id,
            "scope": self.scope,
            "code_challenge": s256(self.verifier),
            "code_challenge_method": "S256",
        }
        if self.redirect_uri is not None:
            p["redirect_uri"] = self.redirect_uri
        if self.state is not None:
            p["state"] = self.state
        if self.nonce is not None:
            p["nonce"] = self.nonce
        for k, v in self.extra.items():
            if v is None:
                p.pop(k, None)
            else:
                p[k] = v
        return p


def query_of(location: str) -> dict[str, str]:
    """The query of a redirect as single values (a repeated one fails)."""
    q = parse_qs(urlsplit(location).query, keep_blank_values=True)
    for k, v in q.items():
        assert len(v) == 1, f"parameter {k} repeated in {location}"
    return {k: v[0] for k, v in q.items()}


def assert_redirect_to(resp: requests.Response, redirect_uri: str) -> dict[str, str]:
    """A 303 whose Location is the client's redirect URI plus a query."""
    assert resp.status_code == 303, f"expected 303, got {resp.status_code}: {resp.text[:400]}"
    loc = resp.headers["Location"]
    base = loc.split("?", 1)[0]
    assert base == redirect_uri.split("?", 1)[0], (loc, redirect_uri)
    assert "#" not in loc
    return query_of(loc)


def assert_error_page(resp: requests.Response, status: int = 400):
    """RFC 6749 §3.1.2.4/§4.1.2.1: an HTML page for the person, never a redirect."""
    assert resp.status_code == status, f"expected {status} page, got {resp.status_code}: {resp.text[:300]}"
    assert "Location" not in resp.headers, resp.headers.get("Location")
    assert resp.headers.get("Content-Type", "").startswith("text/html"), resp.headers.get("Content-Type")
    assert "code=" not in resp.text


def start(b: Browser, req: AuthRequest) -> requests.Response:
    return b.get("/authorize", params=req.params())


def login(b: Browser, page: requests.Response, username: str, password: str,
          csrf: str | None = None) -> requests.Response:
    assert page.status_code in (200, 401, 429), f"not a login page: {page.status_code} {page.text[:300]}"
    f = FormReader(page.text).form("/login")
    assert f.method == "post"
    data = {"interaction": f.inputs["interaction"], "csrf": f.inputs["csrf"] if csrf is None else csrf,
            "username": username, "password": password}
    return b.post("/login", data)


def consent(b: Browser, page: requests.Response, decision: str = "allow") -> requests.Response:
    assert page.status_code == 200, f"not a consent page: {page.status_code} {page.text[:300]}"
    f = FormReader(page.text).form("/consent")
    assert f.method == "post"
    btn = f.button(decision)
    return b.post("/consent", {"interaction": f.inputs["interaction"], "csrf": f.inputs["csrf"],
                               btn["name"]: btn["value"]})


def sign_in_and_allow(b: Browser, req: AuthRequest, username: str, password: str = PASSWORD) -> dict[str, str]:
    """authorize -> login -> (consent) -> the 303's query, checked to carry
    code, state and iss."""
    r = start(b, req)
    if r.status_code == 200 and "/login" in r.text:
        r = login(b, r, username, password)
    if r.status_code == 200 and "/consent" in r.text:
        r = consent(b, r)
    q = assert_redirect_to(r, req.redirect_uri or "")
    assert "error" not in q, q
    assert q.get("code"), q
    if req.state is not None:
        assert q.get("state") == req.state, q
    assert q.get("iss") == b.d.issuer, q
    return q


def redeem(d: Deputy, req: AuthRequest, code: str, *, client_secret: str | None = None,
           **over) -> requests.Response:
    """POST /token for a code; public clients send client_id, confidential
    ones Basic. `over` replaces (None removes) form fields."""
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": req.verifier}
    if req.redirect_uri is not None:
        form["redirect_uri"] = req.redirect_uri
    headers = {}
    if client_secret is None:
        form["client_id"] = req.client_id
    else:
        headers.update(basic_auth(req.client_id, client_secret))
    for k, v in over.items():
        if v is None:
            form.pop(k, None)
        else:
            form[k] = v
    return requests.post(d.token_endpoint, data=form, headers=headers, timeout=15)


# --------------------------------------------------------------------------
# Setup through the CLI
# --------------------------------------------------------------------------


def add_user(d: Deputy, username: str, password: str = PASSWORD, email: str | None = None,
             name: str | None = None) -> dict:
    args = ["user", "add", "--username", username, "--password-stdin"]
    if email:
        args += ["--email", email]
    if name:
        args += ["--name", name]
    return d.cli(*args, input=password + "\n")


def add_app(d: Deputy, client_id: str, *, auth: str = "none", redirect_uris=(), post_logout=(),
            grants=("authorization_code", "refresh_token"), scopes=("notes:read",), audiences=(),
            name: str | None = None, kind: str = "app", id_token_alg: str | None = None) -> dict:
    args = ["client", "add", "--id", client_id, "--kind", kind, "--auth", auth]
    if name:
        args += ["--name", name]
    if id_token_alg:
        args += ["--id-token-alg", id_token_alg]
    for u in redirect_uris:
        args += ["--redirect-uri", u]
    for u in post_logout:
        args += ["--post-logout-redirect-uri", u]
    for g in grants:
        args += ["--grant", g]
    for s in scopes:
        args += ["--scope", s]
    for a in audiences:
        args += ["--audience", a]
    return d.cli(*args)


# --------------------------------------------------------------------------
# A local "client" web server: records the callbacks a browser lands on
# --------------------------------------------------------------------------


class CallbackServer(LoopbackServer):
    """Answers every GET (and POST) with a small HTML page and records its
    path+query (and, for a POST, its path and form body in `posts`)."""

    default_path = "/cb"

    def __init__(self):
        self.hits: list[str] = []
        self.posts: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.event = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                with outer.lock:
                    outer.hits.append(self.path)
                outer.event.set()
                body = b"<!doctype html><title>client</title><h1 id='client-callback'>Back at the client</h1>"
                reply(self, "text/html; charset=utf-8", body)

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = self.rfile.read(length).decode()
                with outer.lock:
                    outer.posts.append((self.path, form))
                outer.event.set()
                body = b"<!doctype html><title>client</title><h1 id='client-callback'>Back at the client</h1>"
                reply(self, "text/html; charset=utf-8", body)

            def log_message(self, *a):
                pass

        self._serve(Handler)


def www_authenticate_error(resp: requests.Response) -> str | None:
    m = re.search(r'error="([^"]*)"', resp.headers.get("WWW-Authenticate", ""))
    return m.group(1) if m else None
