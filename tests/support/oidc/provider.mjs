// A real, certified OpenID Connect provider (node-oidc-provider) for Tokensmith's tests.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"issuer": "http://127.0.0.1:PORT", "port": PORT, "clients": [{client_id,
// client_secret, redirect_uris, post_logout_redirect_uris, ...}], "accounts": {LOGIN: {claim:
// value, ...}}, "cookie_keys": [...], "id_token_ttl": seconds (optional), "thin_id_tokens":
// true to leave profile and email claims out of ID tokens (optional)}.
//
// Any login name signs in on the development login page (any password). Its claims are
// sub = preferred_username = name = the login, email = LOGIN@example.test (verified), each
// overridable per login through "accounts". Prints `listening ISSUER` when ready. Everything
// lives in memory: a restart forgets sessions, codes and grants and signs with a new key.
//
// The provider logs nothing by itself (its request tracing is the `debug` module, off unless
// DEBUG is set, and the Python handle never sets it). What this file logs names errors by
// their code and description only: never a code, a token or a secret.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';

// oidc-provider 9 asks for Node 22 but runs on Node 20 from 20.18 on: it calls URL.parse
// (20.18) and crypto.hash (20.12), and fails without them once a client is used.
if (typeof URL.parse !== 'function' || typeof crypto.hash !== 'function') {
  console.error(`oidc-provider 9 needs Node.js 20.18 or later (URL.parse, crypto.hash), not ${process.version}`);
  process.exit(1);
}

const { default: Provider } = await import('oidc-provider');

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function claimsOf(login) {
  return {
    sub: login,
    preferred_username: login,
    name: login,
    email: `${login}@example.test`,
    email_verified: true,
    ...(config.accounts?.[login] ?? {}),
  };
}

// The provider knows an account by its sub, the development login page by the login name.
const subOf = (login) => claimsOf(login).sub;
const loginOf = (sub) => Object.keys(config.accounts ?? {}).find((login) => subOf(login) === sub) ?? sub;

async function findAccount(ctx, sub) {
  const claims = { ...claimsOf(loginOf(sub)), sub };
  return { accountId: sub, claims: async () => claims };
}

// The provider's own sign-out and error pages import a web font from the internet; these do not.
function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>
<body><h1>${title}</h1>${body}</body></html>`;
}

const escape = (value) => String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function logoutSource(ctx, form) {
  ctx.body = page('Sign out', `<p>Do you want to sign out from ${escape(ctx.host)}?</p>${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.body = page('Signed out', '<p>Your sign-out was successful.</p>');
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', Object.entries(out)
    .map(([key, value]) => `<pre><strong>${escape(key)}</strong>: ${escape(value)}</pre>`).join(''));
}

const signingKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ format: 'jwk' });

const provider = new Provider(config.issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    ...client,
  })),
  findAccount,
  responseTypes: ['code'],
  // A real provider's habit (Keycloak's, Entra ID's): profile and email claims in the ID
  // token too. thin_id_tokens keeps them to the userinfo endpoint, oidc-provider's default.
  conformIdTokenClaims: config.thin_id_tokens ?? false,
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  cookies: {
    keys: config.cookie_keys,
    // Cookies ignore ports: prefixed names keep clear of an application on the same host.
    names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
  },
  jwks: { keys: [{ ...signingKey, kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' }] },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
  },
  renderError,
  clientBasedCORS: () => false,
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: config.id_token_ttl ?? 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    RefreshToken: 3600,
  },
});

// The development login page finishes with the login name as the account id; the account
// id must be the sub (the ID token's sub is the account id), so translate it on the way.
const interactionFinished = provider.interactionFinished.bind(provider);
provider.interactionFinished = (req, res, result, options) => {
  const login = result.login && { ...result.login, accountId: subOf(result.login.accountId) };
  return interactionFinished(req, res, login ? { ...result, login } : result, options);
};

// The development login and consent pages import that font too and cannot be replaced: this
// policy keeps a browser from fetching it. (The provider adds the hash of its self-posting
// forms' inline script to script-src.)
provider.use(async (ctx, next) => {
  ctx.set('content-security-policy', "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'");
  await next();
});

const ERROR_EVENTS = ['authorization', 'grant', 'end_session', 'end_session_confirm', 'end_session_success',
  'userinfo', 'introspection', 'revocation', 'discovery', 'jwks'].map((name) => `${name}.error`);
for (const event of ERROR_EVENTS) {
  provider.on(event, (ctx, error) => {
    const detail = error.error_detail ? ` (${error.error_detail})` : '';
    console.error(`${event}: ${error.error}: ${error.error_description}${detail}`);
  });
}
provider.on('server_error', (ctx, error) => console.error(`server_error: ${error.stack}`));

// Static clients are checked at their first use: check them now, so a mistake fails the start.
for (const { client_id: clientId } of config.clients) {
  await provider.Client.find(clientId);
}

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${config.issuer}`);
});
