// A strict third-party OpenID Connect relying party (panva's openid-client v6,
// built on oauth4webapi) signing a person in at deputy. The person's part
// (login form, consent form) is played with plain fetch and hand-kept cookies;
// everything a relying party must check is left to openid-client.
//
// Input (env): DEPUTY_ISSUER, RP_CLIENT_ID, RP_REDIRECT_URI,
//              RP_POST_LOGOUT_REDIRECT_URI, RP_USERNAME, RP_PASSWORD.
// Output: one JSON object on stdout. Any failure: a JSON object with "error"
// on stdout and exit code 1.
//
// Run by conformance/test_oidc_e2e_openid_client.py.

import * as client from 'openid-client';
import { createHash } from 'node:crypto';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing env ${name}`);
  return v;
};

const ISSUER = env('DEPUTY_ISSUER');
const CLIENT_ID = env('RP_CLIENT_ID');
const REDIRECT_URI = env('RP_REDIRECT_URI');
const POST_LOGOUT_REDIRECT_URI = env('RP_POST_LOGOUT_REDIRECT_URI');
const USERNAME = env('RP_USERNAME');
const PASSWORD = env('RP_PASSWORD');
const SCOPE = process.env.RP_SCOPE || 'openid profile email';

const steps = [];
const step = (s) => steps.push(s);

// ---------------------------------------------------------------- the person's browser

const jar = new Map();

function absorb(res) {
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    const maxAge = attrs.find((a) => a.toLowerCase().startsWith('max-age='));
    if (value === '' || (maxAge && maxAge.split('=')[1] === '0')) jar.delete(name);
    else jar.set(name, value);
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

// Goes through the pages until deputy redirects to the client; returns that URL.
async function person(authorizationUrl) {
  let res = await browse(authorizationUrl);
  if (res.status === 200) {
    let html = await res.text();
    if (html.includes('action="/login"')) {
      step('login page');
      res = await postForm('/login', {
        interaction: hidden(html, 'interaction'),
        csrf: hidden(html, 'csrf'),
        username: USERNAME,
        password: PASSWORD,
      });
      if (res.status !== 200 && res.status !== 303) {
        throw new Error(`POST /login answered ${res.status}`);
      }
      if (res.status === 200) html = await res.text();
    }
    if (res.status === 200 && html.includes('action="/consent"')) {
      step('consent page');
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

// ---------------------------------------------------------------- the relying party

function atHash(accessToken) {
  // OIDC Core §3.1.3.6 for ES256: left half of SHA-256, base64url.
  const d = createHash('sha256').update(accessToken, 'ascii').digest();
  return d.subarray(0, d.length / 2).toString('base64url');
}

async function signIn(config, extra = {}) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  const callback = await person(url);
  const callbackParams = Object.fromEntries(callback.searchParams);
  // Validates: state, iss (RFC 9207, required since the metadata advertises
  // it), the token response, PKCE (verifier sent), and the ID token: JWS
  // signature against jwks_uri (non-repudiation checks on), alg ES256 from the
  // metadata, iss, aud, azp, exp, iat, nonce, auth_time when max_age is used.
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
    ...(extra.max_age !== undefined ? { maxAge: Number(extra.max_age) } : {}),
  });
  const claims = tokens.claims();
  // openid-client leaves at_hash (optional for the code flow) to the RP: check it.
  const atHashOk = claims.at_hash === atHash(tokens.access_token);
  return {
    callback_keys: Object.keys(callbackParams).sort(),
    callback_iss: callbackParams.iss,
    state_matched: callbackParams.state === state,
    nonce,
    tokens: {
      token_type: tokens.token_type,
      expires_in: tokens.expires_in,
      scope: tokens.scope,
      has_refresh_token: typeof tokens.refresh_token === 'string',
      access_token: tokens.access_token,
      id_token: tokens.id_token,
      refresh_token: tokens.refresh_token,
    },
    id_token_claims: claims,
    at_hash_ok: atHashOk,
  };
}

async function main() {
  const out = { steps };
  const discovered = await client.discovery(new URL(ISSUER), CLIENT_ID, undefined, client.None(), {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
  });
  const meta = discovered.serverMetadata();
  // If deputy's metadata lacks an endpoint the later steps need, the
  // discovery test reports it; the endpoint is filled in from deputy's
  // documented path so that the remaining steps still test what they test.
  let config = discovered;
  const patched = {};
  for (const [key, path] of [['userinfo_endpoint', '/userinfo'], ['end_session_endpoint', '/logout']]) {
    if (typeof meta[key] !== 'string') patched[key] = new URL(path, ISSUER).href;
  }
  if (Object.keys(patched).length) {
    config = new client.Configuration({ ...meta, ...patched }, CLIENT_ID, undefined, client.None());
    client.allowInsecureRequests(config);
    client.enableNonRepudiationChecks(config);
  }
  out.patched_metadata = Object.keys(patched).sort();
  out.discovery = {
    issuer: meta.issuer,
    authorization_endpoint: meta.authorization_endpoint,
    token_endpoint: meta.token_endpoint,
    userinfo_endpoint: meta.userinfo_endpoint,
    end_session_endpoint: meta.end_session_endpoint,
    jwks_uri: meta.jwks_uri,
    iss_parameter: meta.authorization_response_iss_parameter_supported,
  };
  step('discovery');

  // 1. Interactive sign-in: login page, consent page, code, tokens.
  const first = await signIn(config);
  out.first = first;
  step('code exchanged');

  // 2. UserInfo; openid-client checks `sub` equals the ID token's.
  out.userinfo = await client.fetchUserInfo(config, first.tokens.access_token, first.id_token_claims.sub);
  step('userinfo');

  // 3. Refresh: a rotated refresh token; any new ID token is validated again
  //    (same iss, sub, aud; OIDC Core §12.2).
  const refreshed = await client.refreshTokenGrant(config, first.tokens.refresh_token);
  out.refresh = {
    token_type: refreshed.token_type,
    scope: refreshed.scope,
    rotated: typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== first.tokens.refresh_token,
    new_access_token: refreshed.access_token !== first.tokens.access_token,
    id_token_sub: refreshed.id_token ? refreshed.claims().sub : null,
  };
  step('refresh');

  // 4. Silent re-authentication with the session (prompt=none, consent
  //    remembered; max_age makes openid-client require auth_time).
  const silent = await signIn(config, { prompt: 'none', max_age: '3600' });
  out.silent = {
    same_sub: silent.id_token_claims.sub === first.id_token_claims.sub,
    auth_time_same: silent.id_token_claims.auth_time === first.id_token_claims.auth_time,
    at_hash_ok: silent.at_hash_ok,
    steps_before: steps.length,
  };
  step('silent');

  // 5. RP-initiated logout with id_token_hint.
  const logoutState = client.randomState();
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: first.tokens.id_token,
    post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI,
    state: logoutState,
  });
  const lo = await browse(endSession);
  const loc = lo.headers.get('location') || '';
  const back = loc ? new URL(loc) : null;
  out.logout = {
    status: lo.status,
    location_base: back ? `${back.origin}${back.pathname}` : null,
    state_matched: back ? back.searchParams.get('state') === logoutState : false,
    session_cookie_left: jar.has('deputy_session'),
  };
  step('logout');

  // 6. After logout, prompt=none must come back with login_required, which
  //    openid-client surfaces as an AuthorizationResponseError.
  try {
    await signIn(config, { prompt: 'none' });
    out.after_logout = { error: null };
  } catch (e) {
    out.after_logout = { error: e.error ?? null, name: e.name, code: e.code ?? null };
  }
  step('after logout');

  // 7. openid-client must refuse a callback whose iss is not the issuer
  //    (RFC 9207 mix-up defence): proves the library checks what we rely on.
  try {
    const codeVerifier = client.randomPKCECodeVerifier();
    const forged = new URL(REDIRECT_URI);
    forged.searchParams.set('code', 'x');
    forged.searchParams.set('state', 's');
    forged.searchParams.set('iss', 'https://evil.example');
    await client.authorizationCodeGrant(config, forged, { pkceCodeVerifier: codeVerifier, expectedState: 's' });
    out.forged_iss_rejected = false;
  } catch (e) {
    out.forged_iss_rejected = e.code ?? e.name;
  }

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
