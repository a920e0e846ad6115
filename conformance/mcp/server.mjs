// An MCP server built from the official TypeScript SDK's own classes
// (McpServer + StreamableHTTPServerTransport, createMcpExpressApp,
// requireBearerAuth, mcpAuthMetadataRouter), protected by deputy: every
// request to /mcp must carry an RFC 9068 access token from deputy, verified
// offline against deputy's JWKS with jose (iss, aud = this server's resource
// URL, typ at+jwt, exp). Otherwise 401 with
// `WWW-Authenticate: Bearer ... resource_metadata="..."` (RFC 9728 §5.1,
// MCP authorization 2025-11-25 "Authorization Server Discovery").
//
// Environment: DEPUTY_ISSUER, MCP_PORT, MCP_SCOPE (default mcp:tools).
// Prints one JSON line {"ready": true, ...} on stdout once listening, then
// one JSON line per /mcp request on stderr (status and why a token was
// refused; never a token).

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { mcpAuthMetadataRouter, getOAuthProtectedResourceMetadataUrl } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const issuer = process.env.DEPUTY_ISSUER;
const port = Number(process.env.MCP_PORT);
const scope = process.env.MCP_SCOPE || 'mcp:tools';
if (!issuer || !port) {
    console.error('DEPUTY_ISSUER and MCP_PORT are required');
    process.exit(2);
}
const resourceUrl = new URL(`http://127.0.0.1:${port}/mcp`);
const resource = resourceUrl.href;
const resourceMetadataUrl = getOAuthProtectedResourceMetadataUrl(resourceUrl);

// RFC 8414 §3: the authorization server's metadata, whose issuer must be
// the one configured (§3.3).
const asMetadataResponse = await fetch(`${issuer}/.well-known/oauth-authorization-server`);
if (!asMetadataResponse.ok) {
    console.error(`authorization server metadata: HTTP ${asMetadataResponse.status}`);
    process.exit(2);
}
const asMetadata = await asMetadataResponse.json();
if (asMetadata.issuer !== issuer) {
    console.error(`authorization server metadata names issuer ${asMetadata.issuer}, expected ${issuer}`);
    process.exit(2);
}
const jwks = createRemoteJWKSet(new URL(asMetadata.jwks_uri));

/** OAuthTokenVerifier: RFC 9068 §4 validation of deputy's access tokens. */
const verifier = {
    async verifyAccessToken(token) {
        let payload;
        try {
            ({ payload } = await jwtVerify(token, jwks, {
                issuer,
                audience: resource,
                typ: 'at+jwt',
                algorithms: ['ES256', 'RS256', 'PS256', 'EdDSA'],
                requiredClaims: ['sub', 'exp', 'iat', 'jti', 'client_id']
            }));
        } catch (e) {
            throw new InvalidTokenError(`access token refused (${e.code || e.name})`);
        }
        return {
            token,
            clientId: String(payload.client_id),
            scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
            expiresAt: payload.exp,
            resource: resourceUrl,
            extra: { sub: payload.sub, aud: payload.aud, jti: payload.jti }
        };
    }
};

function newServer() {
    const server = new McpServer({ name: 'deputy-conformance-mcp', version: '0.0.0' });
    server.registerTool(
        'whoami',
        { description: "The caller's subject, client and scope, as the verified access token says" },
        async extra => {
            const info = extra.authInfo;
            const who = {
                sub: info?.extra?.sub ?? null,
                client_id: info?.clientId ?? null,
                scope: info?.scopes ?? [],
                aud: info?.extra?.aud ?? null,
                jti: info?.extra?.jti ?? null
            };
            return { content: [{ type: 'text', text: JSON.stringify(who) }] };
        }
    );
    return server;
}

const app = createMcpExpressApp({ host: '127.0.0.1' });

// RFC 9728 §3: /.well-known/oauth-protected-resource/mcp.
app.use(
    mcpAuthMetadataRouter({
        oauthMetadata: asMetadata,
        resourceServerUrl: resourceUrl,
        scopesSupported: [scope],
        resourceName: 'deputy conformance MCP server'
    })
);

app.use('/mcp', (req, res, next) => {
    res.on('finish', () => {
        const www = res.getHeader('WWW-Authenticate');
        console.error(JSON.stringify({ method: req.method, path: req.originalUrl, status: res.statusCode, www: www ?? null }));
    });
    next();
});

const bearer = requireBearerAuth({ verifier, requiredScopes: [scope], resourceMetadataUrl, expectedResource: resourceUrl });

app.post('/mcp', bearer, async (req, res) => {
    // Stateless: one server and transport per request (the SDK's
    // simpleStatelessStreamableHttp pattern).
    const server = newServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
        transport.close();
        server.close();
    });
    try {
        await server.connect(transport);
        await transport.handleRequest(req, res, req.body);
    } catch (e) {
        console.error(JSON.stringify({ error: String(e) }));
        if (!res.headersSent) {
            res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
        }
    }
});

for (const method of ['get', 'delete']) {
    app[method]('/mcp', bearer, (req, res) => {
        res.status(405).set('Allow', 'POST').json({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null });
    });
}

const listener = app.listen(port, '127.0.0.1', () => {
    console.log(JSON.stringify({ ready: true, resource, resource_metadata: resourceMetadataUrl }));
});
listener.on('error', e => {
    console.error(`listen: ${e}`);
    process.exit(2);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => process.exit(0));
}
