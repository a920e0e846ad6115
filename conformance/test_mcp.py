"""The official MCP TypeScript SDK (@modelcontextprotocol/sdk, pinned in
conformance/mcp/package-lock.json) signs a person in at deputy, end to end,
as the MCP authorization specification 2025-11-25 describes:

* `mcp/server.mjs`: an MCP server from the SDK's own classes (McpServer,
  StreamableHTTPServerTransport, requireBearerAuth, mcpAuthMetadataRouter)
  that publishes RFC 9728 protected-resource metadata naming deputy and
  verifies deputy's access tokens offline (jose, against deputy's JWKS: iss,
  aud = its own URL, typ at+jwt);
* `mcp/client.mjs`: an MCP client whose OAuthClientProvider lets the SDK's
  auth() do everything: discovery (RFC 9728 then RFC 8414), a Client ID
  Metadata Document client_id or RFC 7591 registration, PKCE (RFC 7636),
  RFC 8707 `resource`, the code exchange and a refresh.

The person's part (login and consent pages) is played here over HTTP; the
code goes back to the SDK on its stdin. `npm ci` runs in conformance/mcp when
its node_modules is missing.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cimd_support import (LOOPBACK_FETCH, MCP_SCOPE, DocServer, add_mcp_resource, client_document, make_tls_files,
                          start_trusting)
from conftest import Deputy, free_port, jwt_parts
from oidc_support import (NO_LOGIN_RATE_LIMIT, PASSWORD, Browser, FormReader, add_user, assert_redirect_to, consent,
                          login)

MCP_DIR = Path(__file__).resolve().parent / "mcp"
# Registrations per second per address (default 1) off: two SDK runs may
# register within a second (the limit has its own test in test_registration.py).
NO_REGISTRATION_RATE_LIMIT = {"DEPUTY_RATE_LIMIT_REGISTRATION": "0"}
CLIENT_NAME = "Deputy conformance MCP client"


def ensure_node_modules():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the MCP SDK end-to-end test")
    if (MCP_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json").is_file():
        return
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=MCP_DIR, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"npm ci failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def node_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **extra}


class Lines:
    """The stdout lines of a process, read on a thread (so reads can time out)."""

    def __init__(self, stream):
        self.q: queue.Queue = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.all.append(line)
            self.q.put(line)
        self.q.put(None)

    def next_json(self, timeout: float) -> dict | None:
        """The next line that is a JSON object, None at end of output."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no JSON line within {timeout}s; output so far: {''.join(self.all)[-2000:]}")
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                return None
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)


class McpServer:
    """`node mcp/server.mjs` for one deputy, on `port`."""

    def __init__(self, d: Deputy, port: int, log: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(["node", str(MCP_DIR / "server.mjs")], cwd=MCP_DIR, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     env=node_env(DEPUTY_ISSUER=d.issuer, MCP_PORT=str(port), MCP_SCOPE=MCP_SCOPE))
        ready = Lines(self.proc.stdout).next_json(30)
        if not ready or not ready.get("ready"):
            self.stop()
            raise AssertionError(f"MCP server did not start: {ready} {log.read_text()[-2000:]}")
        self.resource = ready["resource"]
        self.resource_metadata = ready["resource_metadata"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def run_sdk_client(d: Deputy, server: McpServer, mode: str, redirect_uri: str, log: Path, *,
                   metadata_url: str | None = None, initial_access_token: str | None = None) -> SimpleNamespace:
    """Run mcp/client.mjs; play the person at deputy when the SDK asks; the
    SDK's JSON report plus what the person saw."""
    env = node_env(MCP_SERVER_URL=server.url, MCP_CLIENT_MODE=mode, MCP_REDIRECT_URL=redirect_uri,
                   MCP_CLIENT_NAME=CLIENT_NAME)
    if metadata_url:
        env["MCP_CLIENT_METADATA_URL"] = metadata_url
    if initial_access_token:
        env["INITIAL_ACCESS_TOKEN"] = initial_access_token
    with open(log, "wb") as err:
        proc = subprocess.Popen(["node", str(MCP_DIR / "client.mjs")], cwd=MCP_DIR, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        lines = Lines(proc.stdout)
        seen = SimpleNamespace(authorize_url=None, consent_text="", callback={}, out={})
        try:
            first = lines.next_json(60)
            if first and first.get("event") == "authorize":
                seen.authorize_url = first["url"]
                b = Browser(d)
                page = b.get(first["url"])
                if page.status_code == 200 and "/login" in page.text:
                    page = login(b, page, "alice", PASSWORD)
                if page.status_code == 200 and "/consent" in page.text:
                    seen.consent_text = FormReader(page.text).text
                    page = consent(b, page)
                if page.status_code == 303:
                    seen.callback = assert_redirect_to(page, redirect_uri)
                    proc.stdin.write(json.dumps({"code": seen.callback.get("code"),
                                                 "state": seen.callback.get("state")}) + "\n")
                    proc.stdin.flush()
                    seen.out = lines.next_json(90) or {}
                else:
                    seen.out = {"ok": False, "error": f"deputy answered {page.status_code}: {page.text[:800]}"}
            else:
                seen.out = first or {"ok": False, "error": "no output"}
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    seen.out.setdefault("ok", False)
    seen.stderr = log.read_text(errors="replace")[-3000:]
    return seen


def ok(run: SimpleNamespace) -> dict:
    out = run.out
    assert out.get("ok") is True, (f"the MCP SDK client failed: {json.dumps(out)[:4000]}\n"
                                   f"stderr: {run.stderr}")
    return out


def authorize_params(run: SimpleNamespace) -> dict[str, str]:
    assert run.authorize_url, run.out
    q = parse_qs(urlsplit(run.authorize_url).query)
    assert all(len(v) == 1 for v in q.values()), q
    return {k: v[0] for k, v in q.items()}


def token_requests(out: dict) -> list[dict]:
    return [r for r in out["requests"] if r.get("kind") == "token"]


# --------------------------------------------------------------------------
# Fixtures: one deputy (open registration, CIMD on) with its MCP server, and
# one with token registration with its own.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(module_dir):
    ensure_node_modules()
    ca, cert, key = make_tls_files(module_dir / "tls")
    docs = DocServer(cert, key)
    d = Deputy(module_dir / "deputy", {**LOOPBACK_FETCH, "DEPUTY_REGISTRATION": "open", **NO_LOGIN_RATE_LIMIT,
                                                **NO_REGISTRATION_RATE_LIMIT})
    user = add_user(d, "alice")
    port = free_port()
    add_mcp_resource(d, f"http://127.0.0.1:{port}/mcp")
    with docs:
        start_trusting(d, ca)
        server = McpServer(d, port, module_dir / "mcp-server.log")
        try:
            yield SimpleNamespace(d=d, user=user, docs=docs, server=server, dir=module_dir)
        finally:
            server.stop()
            d.stop()


@pytest.fixture(scope="module")
def cimd_run(env):
    """The SDK with clientMetadataUrl: client_id is the document's URL."""
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    path = "/mcp/client-metadata.json"
    url = env.docs.url(path)
    env.docs.put_json(path, client_document(url, [redirect_uri], client_name=CLIENT_NAME,
                                            client_uri="https://mcp-client.example/"))
    run = run_sdk_client(env.d, env.server, "cimd", redirect_uri, env.dir / "client-cimd.log", metadata_url=url)
    run.redirect_uri, run.client_id, run.doc_path = redirect_uri, url, path
    return run


@pytest.fixture(scope="module")
def dcr_run(env):
    """The SDK without client information and without clientMetadataUrl: it
    registers at deputy's registration_endpoint (open mode)."""
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    run = run_sdk_client(env.d, env.server, "dcr", redirect_uri, env.dir / "client-dcr.log")
    run.redirect_uri = redirect_uri
    return run


@pytest.fixture(scope="module")
def token_env(module_dir):
    ensure_node_modules()
    d = Deputy(module_dir / "deputy-token", {"DEPUTY_REGISTRATION": "token", **NO_LOGIN_RATE_LIMIT,
                                                         **NO_REGISTRATION_RATE_LIMIT})
    user = add_user(d, "alice")
    port = free_port()
    add_mcp_resource(d, f"http://127.0.0.1:{port}/mcp")
    d.start()
    server = McpServer(d, port, module_dir / "mcp-server-token.log")
    try:
        yield SimpleNamespace(d=d, user=user, server=server, dir=module_dir)
    finally:
        server.stop()
        d.stop()


# --------------------------------------------------------------------------
# The MCP server itself (so the checks below mean something)
# --------------------------------------------------------------------------


def test_mcp_server_publishes_protected_resource_metadata(env):
    """RFC 9728 §3.2 / §5.1, MCP 2025-11-25 "Authorization Server Discovery":
    401 with a Bearer challenge naming resource_metadata; the metadata names
    the resource and deputy as its authorization server."""
    s = env.server
    r = requests.post(s.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                      headers={"Accept": "application/json, text/event-stream"}, timeout=10)
    assert r.status_code == 401
    www = r.headers["WWW-Authenticate"]
    assert www.startswith("Bearer ") and f'resource_metadata="{s.resource_metadata}"' in www, www
    assert s.resource_metadata == f"http://127.0.0.1:{s.port}/.well-known/oauth-protected-resource/mcp"
    prm = requests.get(s.resource_metadata, timeout=10).json()
    assert prm["resource"] == s.url
    assert prm["authorization_servers"] == [env.d.issuer]
    assert prm["scopes_supported"] == [MCP_SCOPE]


# --------------------------------------------------------------------------
# Client ID Metadata Document
# --------------------------------------------------------------------------


def test_mcp_sdk_uses_the_metadata_document_url_as_client_id(env, cimd_run):
    """MCP 2025-11-25 §"Client ID Metadata Documents" / CIMD §3: with
    client_id_metadata_document_supported in deputy's metadata, the SDK sends
    the document's URL as client_id, registers nothing, and deputy fetched
    the document; RFC 8707 §2: `resource` is the MCP server's URL; RFC 7636:
    S256; the scope is the one the server's challenge named."""
    out = ok(cimd_run)
    p = authorize_params(cimd_run)
    assert cimd_run.authorize_url.split("?")[0] == env.d.url("/authorize")
    assert p["client_id"] == cimd_run.client_id
    assert p["redirect_uri"] == cimd_run.redirect_uri
    assert p["resource"] == env.server.resource
    assert p["code_challenge_method"] == "S256" and p["response_type"] == "code"
    assert p["scope"] == MCP_SCOPE, p
    assert cimd_run.callback["iss"] == env.d.issuer
    assert out["state_matched"] is True
    assert not [r for r in out["requests"] if r.get("kind") == "register"], out["requests"]
    as_meta = [r for r in out["requests"] if r.get("kind") == "discovery" and "client_id_metadata_document_supported" in r]
    assert as_meta and as_meta[0]["client_id_metadata_document_supported"] is True, out["requests"]
    assert out["client_information"]["client_id"] == cimd_run.client_id
    assert env.docs.count(cimd_run.doc_path) >= 1
    assert CLIENT_NAME in cimd_run.consent_text and "describ" in cimd_run.consent_text.lower(), cimd_run.consent_text
    listed = [c for c in env.d.cli("client", "list") if (c.get("id") or c.get("client_id")) == cimd_run.client_id]
    assert len(listed) == 1 and listed[0]["registration"] == "metadata_document", listed


def test_mcp_sdk_token_requests_for_the_document_client(env, cimd_run):
    """RFC 6749 §4.1.3 / §6 with RFC 8707 §2.2: the SDK redeems the code and
    refreshes as a public client (client_id in the body, no Authorization
    header), naming the same resource each time; deputy answers 200 and
    rotates the refresh token (RFC 9700 §4.14.2)."""
    out = ok(cimd_run)
    toks = token_requests(out)
    assert [t["form"]["grant_type"] for t in toks] == ["authorization_code", "refresh_token"], toks
    for t in toks:
        assert t["status"] == 200, t
        assert t["form"]["client_id"] == cimd_run.client_id, t
        assert t["form"]["resource"] == env.server.resource, t
        assert t["authorization_header"] is False
        assert t["response"]["token_type"].lower() == "bearer"
    assert toks[0]["form"]["redirect_uri"] == cimd_run.redirect_uri
    assert toks[0]["form"]["code_verifier"] == "<present>"
    assert out["refresh_result"] == "AUTHORIZED"
    assert out["tokens"]["refresh_token_rotated"] is True
    assert out["tokens"]["access_token_changed"] is True


def test_mcp_tool_sees_the_person_through_the_document_client(env, cimd_run):
    """The MCP server verified deputy's token (RFC 9068 §4: signature by
    deputy's JWKS, iss, aud = the server, typ at+jwt) before and after the
    refresh; the tool sees the person's sub, the client and the scope."""
    out = ok(cimd_run)
    assert out["tools"] == ["whoami"]
    for who in (out["first"], out["second"]):
        assert who["sub"] == env.user["id"]
        assert who["client_id"] == cimd_run.client_id
        assert MCP_SCOPE in who["scope"]
        assert who["aud"] in (env.server.resource, [env.server.resource])
    assert out["first"]["jti"] != out["second"]["jti"]
    header, claims = jwt_parts(out["tokens"]["refreshed_access_token"])
    assert header["typ"] == "at+jwt" and claims["iss"] == env.d.issuer


def test_mcp_server_refuses_a_tampered_token(env, cimd_run):
    """The server's verification is live: deputy's own token is accepted, the
    same token with another signature is 401 invalid_token (RFC 6750 §3.1)."""
    out = ok(cimd_run)
    at = out["tokens"]["refreshed_access_token"]
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "probe", "version": "0"}}}
    hdrs = {"Accept": "application/json, text/event-stream"}
    good = requests.post(env.server.url, json=init, headers={**hdrs, "Authorization": f"Bearer {at}"}, timeout=10)
    assert good.status_code == 200, good.text[:300]
    head, payload, sig = at.split(".")
    forged = f"{head}.{payload}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}"
    bad = requests.post(env.server.url, json=init, headers={**hdrs, "Authorization": f"Bearer {forged}"}, timeout=10)
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers.get("WWW-Authenticate", "")


# --------------------------------------------------------------------------
# Dynamic client registration
# --------------------------------------------------------------------------


def test_mcp_sdk_registers_dynamically_and_calls_the_tool(env, dcr_run):
    """MCP 2025-11-25 §"Dynamic Client Registration" / RFC 7591 §3: without
    a metadata URL the SDK registers at the advertised registration_endpoint
    (201, the metadata it sent echoed), then signs the person in with the
    client_id it got, calls the tool, refreshes and calls it again."""
    out = ok(dcr_run)
    regs = [r for r in out["requests"] if r.get("kind") == "register"]
    assert len(regs) == 1, out["requests"]
    reg = regs[0]
    assert reg["url"] == env.d.url("/register") and reg["status"] == 201, reg
    assert reg["body"]["redirect_uris"] == [dcr_run.redirect_uri]
    assert reg["body"]["token_endpoint_auth_method"] == "none"
    cid = reg["response"]["client_id"]
    assert reg["response"]["redirect_uris"] == [dcr_run.redirect_uri]
    assert "client_secret" not in reg["response"]
    assert out["client_information"]["client_id"] == cid
    p = authorize_params(dcr_run)
    assert p["client_id"] == cid and p["resource"] == env.server.resource and p["scope"] == MCP_SCOPE, p
    toks = token_requests(out)
    assert [t["form"]["grant_type"] for t in toks] == ["authorization_code", "refresh_token"], toks
    assert all(t["status"] == 200 and t["form"]["client_id"] == cid and t["form"]["resource"] == env.server.resource
               for t in toks), toks
    for who in (out["first"], out["second"]):
        assert who["sub"] == env.user["id"] and who["client_id"] == cid and MCP_SCOPE in who["scope"]
    assert out["tokens"]["refresh_token_rotated"] is True
    listed = [c for c in env.d.cli("client", "list") if (c.get("id") or c.get("client_id")) == cid]
    assert len(listed) == 1 and listed[0].get("registration") != "metadata_document", listed
    events = env.d.cli("audit", "--event", "client_registered", "--limit", "1000")
    assert any(e.get("client_id") == cid or cid in json.dumps(e.get("detail")) for e in events), events[-3:]


def test_mcp_sdk_registers_with_an_initial_access_token(token_env):
    """RFC 7591 §3 (initial access token) with DEPUTY_REGISTRATION=token: the
    SDK has no option for the token, so the fetch function given to it (the
    SDK's own hook, `fetchFn`) adds it to the registration request; the
    registration and the rest of the flow succeed, and the same SDK without
    the token is refused 401."""
    d = token_env.d
    iat = d.cli("registration", "token", "create", "--max-uses", "1")["initial_access_token"]
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    run = run_sdk_client(d, token_env.server, "dcr", redirect_uri, token_env.dir / "client-dcr-token.log",
                         initial_access_token=iat)
    out = ok(run)
    regs = [r for r in out["requests"] if r.get("kind") == "register"]
    assert len(regs) == 1 and regs[0]["status"] == 201 and regs[0]["initial_access_token_sent"] is True, regs
    cid = regs[0]["response"]["client_id"]
    assert out["first"]["sub"] == token_env.user["id"] and out["second"]["client_id"] == cid

    refused = run_sdk_client(d, token_env.server, "dcr", redirect_uri, token_env.dir / "client-dcr-none.log")
    assert refused.out["ok"] is False and refused.authorize_url is None, refused.out
    regs = [r for r in refused.out.get("requests", []) if r.get("kind") == "register"]
    assert len(regs) == 1 and regs[0]["status"] == 401, refused.out
