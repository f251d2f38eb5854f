// A fake OIDC provider for the browser suite: the authorization code flow with PKCE, as the
// console meets it in AWS (tests/browser/oidc-sign-in.mjs walks it).

import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';

/** Bytes as base64url without padding, as PKCE and JWTs write them. */
export const b64url = (bytes) => Buffer.from(bytes).toString('base64url');

/**
 * A fake OIDC provider on a free loopback port: authorization code with PKCE (S256), for one
 * public client whose redirect URI is `redirectUri`. /authorize remembers the challenge and
 * sends the browser back with a code and the same state (or, with `forgeState`, another one);
 * /token hands out `idToken` for a code once, if base64url(sha256(code_verifier)) is the
 * challenge. What it saw is in `authorizations` and `exchanges`, what it refused in `problems`.
 */
export function startProvider({ clientId, redirectUri, idToken }) {
  const codes = new Map();
  const p = { authorizations: [], exchanges: [], problems: [], forgeState: false };
  const refuse = (res, status, why, headers = {}) => {
    p.problems.push(why);
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify({ error: 'invalid_request', error_description: why }));
  };
  const http = createServer((req, res) => {
    const url = new URL(req.url, 'http://provider');
    if (req.method === 'GET' && url.pathname === '/authorize') {
      const q = Object.fromEntries(url.searchParams);
      p.authorizations.push(q);
      if (q.response_type !== 'code') return refuse(res, 400, `response_type ${q.response_type}`);
      if (q.client_id !== clientId) return refuse(res, 400, `client_id ${q.client_id}`);
      if (q.redirect_uri !== redirectUri) return refuse(res, 400, `redirect_uri ${q.redirect_uri}`);
      if (q.code_challenge_method !== 'S256') return refuse(res, 400, `code_challenge_method ${q.code_challenge_method}`);
      if (!/^[A-Za-z0-9_-]{43}$/.test(q.code_challenge || '')) return refuse(res, 400, `code_challenge ${q.code_challenge}`);
      if (!q.state) return refuse(res, 400, 'no state');
      const code = b64url(randomBytes(18));
      codes.set(code, { challenge: q.code_challenge, redirectUri: q.redirect_uri });
      const back = new URL(q.redirect_uri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', p.forgeState ? `forged-${q.state}` : q.state);
      res.writeHead(302, { Location: back.href });
      return res.end();
    }
    if (req.method === 'POST' && url.pathname === '/token') {
      // A form POST without custom headers is a simple request: no preflight, but the answer
      // must name the console's origin or the console cannot read it.
      const cors = { 'Access-Control-Allow-Origin': new URL(redirectUri).origin, Vary: 'Origin' };
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        const f = Object.fromEntries(new URLSearchParams(body));
        p.exchanges.push({ ...f, origin: req.headers.origin, contentType: req.headers['content-type'] });
        const issued = codes.get(f.code);
        codes.delete(f.code);
        if (!/^application\/x-www-form-urlencoded/.test(req.headers['content-type'] || '')) return refuse(res, 400, `content-type ${req.headers['content-type']}`, cors);
        if (f.grant_type !== 'authorization_code') return refuse(res, 400, `grant_type ${f.grant_type}`, cors);
        if (!issued) return refuse(res, 400, `unknown or used code ${f.code}`, cors);
        if (f.client_id !== clientId) return refuse(res, 400, `client_id ${f.client_id}`, cors);
        if (f.redirect_uri !== issued.redirectUri) return refuse(res, 400, `redirect_uri ${f.redirect_uri}`, cors);
        if (!/^[A-Za-z0-9._~-]{43,128}$/.test(f.code_verifier || '')) return refuse(res, 400, `code_verifier ${f.code_verifier}`, cors);
        if (b64url(createHash('sha256').update(f.code_verifier).digest()) !== issued.challenge) return refuse(res, 400, 'the verifier does not match the challenge', cors);
        res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...cors });
        res.end(JSON.stringify({ id_token: idToken, access_token: idToken, token_type: 'Bearer', expires_in: 3600 }));
      });
      return undefined;
    }
    return refuse(res, 404, `${req.method} ${url.pathname}`);
  });
  return new Promise((resolve) => http.listen(0, '127.0.0.1', () => {
    p.origin = `http://127.0.0.1:${http.address().port}`;
    p.close = () => { http.closeAllConnections(); http.close(); };
    resolve(p);
  }));
}
