// An MCP client built from the official TypeScript SDK (Client +
// StreamableHTTPClientTransport with an OAuthClientProvider; the SDK's own
// auth() does discovery, registration, PKCE, the code exchange and the
// refresh). It connects to server.mjs, is sent to deputy, and:
//
//   MCP_CLIENT_MODE=cimd  the provider has clientMetadataUrl set: the SDK
//                         uses that URL as client_id (Client ID Metadata
//                         Document) when deputy advertises
//                         client_id_metadata_document_supported
//   MCP_CLIENT_MODE=dcr   no client information: the SDK registers at
//                         deputy's registration_endpoint (RFC 7591); with
//                         INITIAL_ACCESS_TOKEN set, the fetch given to the SDK
//                         adds it as a Bearer to that one request (RFC 7591
//                         §3: the SDK has no option of its own for it)
//
// Protocol with the Python test (conformance/test_mcp.py): when the SDK
// calls redirectToAuthorization, one JSON line {"event": "authorize", "url":
// ...} goes to stdout; the test signs the person in at deputy and writes one
// JSON line {"code": ..., "state": ...} to stdin. The client then lists the
// tools, calls `whoami`, has the SDK refresh its token (auth() with the stored
// refresh token), calls `whoami` again on a new connection and prints one
// JSON line: the result (no refresh token, no client secret).
//
// Environment: MCP_SERVER_URL, MCP_CLIENT_MODE, MCP_REDIRECT_URL,
// MCP_CLIENT_METADATA_URL (cimd), MCP_CLIENT_NAME, INITIAL_ACCESS_TOKEN.

import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const serverUrl = new URL(process.env.MCP_SERVER_URL);
const mode = process.env.MCP_CLIENT_MODE;
const redirectUrl = process.env.MCP_REDIRECT_URL;
const metadataUrl = process.env.MCP_CLIENT_METADATA_URL;
const initialAccessToken = process.env.INITIAL_ACCESS_TOKEN || '';
if (!['cimd', 'dcr'].includes(mode)) {
    throw new Error(`MCP_CLIENT_MODE must be cimd or dcr, not ${mode}`);
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function readLine() {
    const { value, done } = await lines.next();
    if (done) throw new Error('stdin closed before the test answered');
    return JSON.parse(value);
}

// ---- What the SDK sent: every HTTP request it made, secrets left out.
const requests = [];
let registrationEndpoint;
const SECRET_PARAMS = new Set(['code', 'code_verifier', 'refresh_token', 'client_secret']);

function describeForm(body) {
    const out = {};
    for (const [k, v] of new URLSearchParams(String(body))) {
        out[k] = SECRET_PARAMS.has(k) ? '<present>' : v;
    }
    return out;
}

async function recordingFetch(input, init = {}) {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = (init.method || (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const entry = { method, url: url.origin + url.pathname };
    if (method === 'POST' && registrationEndpoint && url.href === registrationEndpoint) {
        entry.kind = 'register';
        entry.body = JSON.parse(String(init.body));
        if (initialAccessToken) {
            const headers = new Headers(init.headers);
            headers.set('Authorization', `Bearer ${initialAccessToken}`);
            init = { ...init, headers };
            entry.initial_access_token_sent = true;
        }
    } else if (method === 'POST' && url.pathname === '/token') {
        entry.kind = 'token';
        entry.form = describeForm(init.body);
        entry.authorization_header = new Headers(init.headers).has('Authorization');
    } else if (url.pathname.startsWith('/.well-known/')) {
        entry.kind = 'discovery';
    } else if (url.href.startsWith(serverUrl.origin)) {
        entry.kind = 'mcp';
        entry.bearer = /^Bearer /.test(new Headers(init.headers).get('Authorization') || '');
    }
    const response = await fetch(input, init);
    entry.status = response.status;
    if (entry.kind === 'discovery' && response.ok) {
        const doc = await response.clone().json().catch(() => null);
        if (doc && doc.registration_endpoint) {
            registrationEndpoint = doc.registration_endpoint;
        }
        if (doc && url.pathname.startsWith('/.well-known/oauth-authorization-server')) {
            entry.client_id_metadata_document_supported = doc.client_id_metadata_document_supported ?? null;
            entry.registration_endpoint = doc.registration_endpoint ?? null;
        }
    }
    if (entry.kind === 'register') {
        const doc = await response.clone().json().catch(() => null);
        if (doc && typeof doc === 'object') {
            entry.response = { ...doc };
            if ('client_secret' in entry.response) entry.response.client_secret = '<present>';
        }
    }
    if (entry.kind === 'token') {
        const doc = await response.clone().json().catch(() => null);
        if (doc && typeof doc === 'object') {
            entry.response = { error: doc.error, token_type: doc.token_type, scope: doc.scope, expires_in: doc.expires_in,
                               has_refresh_token: typeof doc.refresh_token === 'string' };
        }
    }
    requests.push(entry);
    return response;
}

// ---- The OAuthClientProvider: everything kept in memory.
class Provider {
    constructor() {
        this._state = randomBytes(16).toString('base64url');
        this.clientMetadataUrl = mode === 'cimd' ? metadataUrl : undefined;
        this.saved = {};
        this.authorizationUrls = [];
    }
    get redirectUrl() {
        return redirectUrl;
    }
    get clientMetadata() {
        return {
            client_name: process.env.MCP_CLIENT_NAME || 'deputy conformance MCP client',
            redirect_uris: [redirectUrl],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none'
        };
    }
    state() {
        return this._state;
    }
    clientInformation() {
        return this.saved.client;
    }
    saveClientInformation(info) {
        this.saved.client = info;
    }
    tokens() {
        return this.saved.tokens;
    }
    saveTokens(tokens) {
        this.saved.tokens = tokens;
    }
    redirectToAuthorization(url) {
        this.authorizationUrls.push(url.href);
        process.stdout.write(JSON.stringify({ event: 'authorize', url: url.href }) + '\n');
    }
    saveCodeVerifier(v) {
        this.saved.verifier = v;
    }
    codeVerifier() {
        return this.saved.verifier;
    }
    saveDiscoveryState(s) {
        this.saved.discovery = s;
    }
    discoveryState() {
        return this.saved.discovery;
    }
}

async function connect(provider) {
    const client = new Client({ name: 'deputy-conformance-mcp-client', version: '0.0.0' });
    const transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: recordingFetch });
    await client.connect(transport);
    return { client, transport };
}

async function whoami(client) {
    const r = await client.callTool({ name: 'whoami', arguments: {} });
    if (r.isError) throw new Error(`whoami failed: ${JSON.stringify(r.content)}`);
    return JSON.parse(r.content[0].text);
}

async function main() {
    const provider = new Provider();
    const out = { mode };

    // 1. Unauthorized: the SDK discovers, registers (dcr) and sends the person off.
    let first;
    {
        const client = new Client({ name: 'deputy-conformance-mcp-client', version: '0.0.0' });
        const transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: recordingFetch });
        try {
            await client.connect(transport);
            throw new Error('connected without authorization');
        } catch (e) {
            if (!(e instanceof UnauthorizedError)) throw e;
        }
        const answer = await readLine();
        out.state_matched = answer.state === provider._state;
        await transport.finishAuth(answer.code);
        first = { ...provider.tokens() };
    }

    // 2. Authorized: list and call the tool.
    {
        const { client } = await connect(provider);
        out.tools = (await client.listTools()).tools.map(t => t.name);
        out.first = await whoami(client);
        await client.close();
    }

    // 3. Refresh through the SDK's own path: auth() with the stored refresh token.
    out.refresh_result = await auth(provider, { serverUrl, fetchFn: recordingFetch });
    const refreshed = provider.tokens();

    // 4. The refreshed token at the tool, on a new connection.
    {
        const { client } = await connect(provider);
        out.second = await whoami(client);
        await client.close();
    }

    const client = { ...provider.clientInformation() };
    if ('client_secret' in client) client.client_secret = '<present>';
    out.client_information = client;
    out.authorization_urls = provider.authorizationUrls;
    out.tokens = {
        first_access_token: first.access_token,
        first_scope: first.scope ?? null,
        refreshed_access_token: refreshed.access_token,
        refreshed_scope: refreshed.scope ?? null,
        access_token_changed: first.access_token !== refreshed.access_token,
        refresh_token_rotated: !!first.refresh_token && !!refreshed.refresh_token && first.refresh_token !== refreshed.refresh_token
    };
    out.requests = requests;
    out.ok = true;
    process.stdout.write(JSON.stringify(out) + '\n');
}

main().then(
    () => process.exit(0),
    e => {
        process.stdout.write(JSON.stringify({ ok: false, error: String(e), stack: String(e?.stack || ''), requests }) + '\n');
        process.exit(1);
    }
);
