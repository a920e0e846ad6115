"""Helpers for the Client ID Metadata Document, dynamic client registration
and MCP tests (test_client_metadata.py, test_registration.py, test_mcp.py).

`DocServer` is an https server on 127.0.0.1 with a certificate for the name
`localhost` from a test CA (made with `cryptography`); deputy trusts the CA
through `SSL_CERT_FILE` (OpenSSL's variable) in its environment, which
`start_trusting` sets only while the server process is spawned. Each path
answers what the test put there (a document, a redirect, a slow or oversized
body) and every request is recorded, so a test can say a URL was never
fetched.

Nothing here imports or reuses deputy's own code.
"""

from __future__ import annotations

import datetime
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from conftest import Deputy, LoopbackServer

# development setting: fetch from loopback addresses (jwks_uri and metadata documents)
LOOPBACK_FETCH = {"DEPUTY_ALLOW_LOOPBACK_FETCH": "true"}
# draft-ietf-oauth-client-id-metadata-document: deputy's limit on a document's size
DOC_LIMIT = 5120
# deputy's deadline for one outbound fetch (seconds)
FETCH_DEADLINE = 5.0

MCP_SCOPE = "mcp:tools"
MCP_SCOPE_TEXT = "Use the MCP tools"


def make_tls_files(directory: Path, host: str = "localhost") -> tuple[str, str, str]:
    """A test CA and a server certificate for `host` only: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("deputy CIMD test CA")).issuer_name(name("deputy CIMD test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name(host)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / n for n in ("ca.pem", "cert.pem", "key.pem")]
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(paths[0]), str(paths[1]), str(paths[2])


def start_trusting(d: Deputy, ca_file: str) -> Deputy:
    """Start `d` with `SSL_CERT_FILE=ca_file` in its environment (the
    process environment is copied when deputy is spawned, so it is set only
    around the spawn)."""
    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = ca_file
    try:
        d.spawn()
    finally:
        if old is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = old
    return d.wait_ready()


@dataclass
class Route:
    """What one path answers."""
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class DocServer(LoopbackServer):
    """https on 127.0.0.1 (certificate for `localhost`); `put` a route per
    path (the query is part of the path); unknown paths get 404. Records
    every request line's target."""

    def __init__(self, cert: str, key: str):
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                with outer.lock:
                    outer.requests.append(self.path)
                    route = outer.routes.get(self.path)
                if route is None:
                    route = Route(404, b'{"error":"not found"}')
                if route.delay:
                    time.sleep(route.delay)
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(route.body)))
                    for k, v in route.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def log_message(self, *a):
                pass

        self._serve(Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)

    def url(self, path: str | None = None, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path or '/'}"

    def put(self, path: str, route: Route) -> str:
        with self.lock:
            self.routes[path] = route
        return self.url(path)

    def put_json(self, path: str, doc, **kw) -> str:
        return self.put(path, Route(body=json.dumps(doc).encode(), **kw))

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for p in self.requests if p == path)


def client_document(client_id: str, redirect_uris: list[str], **extra) -> dict:
    """A public client's metadata document (draft-ietf-oauth-client-id-
    metadata-document §3; RFC 7591 §2 fields); `extra` adds or, with None,
    removes fields."""
    doc = {
        "client_id": client_id,
        "client_name": "Notes Agent",
        "client_uri": "https://notes-agent.example/",
        "logo_uri": "https://notes-agent.example/logo.png",
        "redirect_uris": redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    for k, v in extra.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return doc


def add_mcp_resource(d: Deputy, resource: str) -> dict:
    """`deputy resource add` with the one scope the tests ask for."""
    return d.cli("resource", "add", "--id", resource, "--scope", f"{MCP_SCOPE}={MCP_SCOPE_TEXT}")
