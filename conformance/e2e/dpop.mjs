// DPoP (RFC 9449) with a real client library: panva's openid-client v6 (on
// oauth4webapi) generates a key pair (`randomDPoPKeyPair`), wraps it in its
// DPoP handle (`getDPoPHandle`) and uses it for every request; the library
// builds the proofs (and would retry with a server nonce on its own).
//
// 1. client credentials with client_secret_basic → a DPoP token, introspected
//    with the same client;
// 2. a public client's authorization code flow (PKCE, `dpop_jkt` at
//    /authorize), the person's part played with fetch and hand-kept cookies
//    like rp.mjs; userinfo with the bound token; a refresh.
//
// Input (env): DEPUTY_ISSUER, SVC_CLIENT_ID, SVC_CLIENT_SECRET, RP_CLIENT_ID,
//              RP_REDIRECT_URI, RP_USERNAME, RP_PASSWORD.
// Output: one JSON object on stdout, with the RFC 7638 thumbprint of the
// generated key (`jkt`, computed here from the exported public JWK) and what
// the library got. Any failure: a JSON object with "error", exit code 1.
//
// Run by conformance/test_dpop.py.

import * as client from 'openid-client';
import { createHash } from 'node:crypto';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing env ${name}`);
  return v;
};

const ISSUER = env('DEPUTY_ISSUER');
const SVC_CLIENT_ID = env('SVC_CLIENT_ID');
const SVC_CLIENT_SECRET = env('SVC_CLIENT_SECRET');
const RP_CLIENT_ID = env('RP_CLIENT_ID');
const REDIRECT_URI = env('RP_REDIRECT_URI');
const USERNAME = env('RP_USERNAME');
const PASSWORD = env('RP_PASSWORD');

const steps = [];
const step = (s) => steps.push(s);

// RFC 7638 §3: SHA-256 over the required members in lexicographic order.
function thumbprint(jwk) {
  const required = {
    EC: ['crv', 'kty', 'x', 'y'],
    RSA: ['e', 'kty', 'n'],
    OKP: ['crv', 'kty', 'x'],
  }[jwk.kty];
  const canonical = JSON.stringify(Object.fromEntries(required.map((k) => [k, jwk[k]])));
  return createHash('sha256').update(canonical, 'utf8').digest('base64url');
}

// ---------------------------------------------------------------- the person's browser

const jar = new Map();

function absorb(res) {
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    const maxAge = attrs.find((a) => a.toLowerCase().startsWith('max-age='));
    const value = pair.slice(eq + 1);
    if (value === '' || (maxAge && maxAge.split('=')[1] === '0')) jar.delete(pair.slice(0, eq));
    else jar.set(pair.slice(0, eq), value);
  }
}

async function browse(url, init = {}) {
  const headers = new Headers(init.headers || {});
  if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  absorb(res);
  return res;
}

function hidden(html, name) {
  const m = html.match(new RegExp(`<input[^>]*name="${name}"[^>]*value="([^"]*)"`));
  if (!m) throw new Error(`no hidden input ${name} in page: ${html.slice(0, 300)}`);
  return m[1];
}

async function postForm(path, fields) {
  return browse(new URL(path, ISSUER), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
}

// Login and consent pages until deputy redirects to the client; that URL.
async function person(authorizationUrl) {
  let res = await browse(authorizationUrl);
  if (res.status === 200) {
    let html = await res.text();
    if (html.includes('action="/login"')) {
      res = await postForm('/login', {
        interaction: hidden(html, 'interaction'),
        csrf: hidden(html, 'csrf'),
        username: USERNAME,
        password: PASSWORD,
      });
      if (res.status === 200) html = await res.text();
    }
    if (res.status === 200 && html.includes('action="/consent"')) {
      res = await postForm('/consent', {
        interaction: hidden(html, 'interaction'),
        csrf: hidden(html, 'csrf'),
        decision: 'allow',
      });
    }
  }
  if (res.status !== 303 && res.status !== 302) {
    throw new Error(`expected a redirect to the client, got ${res.status}: ${(await res.text()).slice(0, 300)}`);
  }
  const location = res.headers.get('location');
  if (!location.startsWith(REDIRECT_URI)) throw new Error(`redirected elsewhere: ${location}`);
  return new URL(location);
}

// ---------------------------------------------------------------- the client

async function main() {
  const out = { steps };
  const keyPair = await client.randomDPoPKeyPair('ES256');
  const publicJwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
  out.public_jwk = { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x, y: publicJwk.y };
  out.jkt = thumbprint(publicJwk);

  // 1. A service: client credentials, client_secret_basic.
  const svc = await client.discovery(new URL(ISSUER), SVC_CLIENT_ID, undefined,
    client.ClientSecretBasic(SVC_CLIENT_SECRET), { execute: [client.allowInsecureRequests] });
  out.dpop_algs = svc.serverMetadata().dpop_signing_alg_values_supported;
  const svcDPoP = client.getDPoPHandle(svc, keyPair);
  const cc = await client.clientCredentialsGrant(svc, { scope: 'read' }, { DPoP: svcDPoP });
  step('client credentials');
  const introspection = await client.tokenIntrospection(svc, cc.access_token);
  step('introspection');
  out.client_credentials = {
    token_type: cc.token_type,
    access_token: cc.access_token,
    introspection: { active: introspection.active, token_type: introspection.token_type, cnf: introspection.cnf },
  };

  // 2. A public app: authorization code with PKCE, the code bound to the key.
  const rp = await client.discovery(new URL(ISSUER), RP_CLIENT_ID, undefined, client.None(), {
    execute: [client.allowInsecureRequests],
  });
  const rpDPoP = client.getDPoPHandle(rp, keyPair);
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(rp, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid notes:read',
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    dpop_jkt: out.jkt,
  });
  const callback = await person(url);
  step('signed in');
  const tokens = await client.authorizationCodeGrant(rp, callback, {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  }, undefined, { DPoP: rpDPoP });
  step('code exchanged');
  const sub = tokens.claims().sub;
  const userinfo = await client.fetchUserInfo(rp, tokens.access_token, sub, { DPoP: rpDPoP });
  step('userinfo');
  const refreshed = await client.refreshTokenGrant(rp, tokens.refresh_token, undefined, { DPoP: rpDPoP });
  step('refresh');
  out.code_flow = {
    token_type: tokens.token_type,
    access_token: tokens.access_token,
    userinfo_sub: userinfo.sub,
    refresh_token_type: refreshed.token_type,
    refreshed_access_token: refreshed.access_token,
    refresh_token: refreshed.refresh_token,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stdout.write(
    JSON.stringify({
      error: String(e && e.message),
      name: e && e.name,
      code: e && e.code,
      oauth_error: e && e.error,
      cause: e && e.cause ? String(e.cause.message || JSON.stringify(e.cause)) : null,
      steps,
    }) + '\n',
  );
  process.exit(1);
});
