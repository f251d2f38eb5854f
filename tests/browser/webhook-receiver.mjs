// A webhook receiver for the browser suite: an http server on a free loopback port (the local
// server reaches it with --allow-private-webhooks) that answers what it is told to, keeps what
// it was sent, and checks Standard Webhooks signatures with Node's own crypto.

import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Starts the receiver. `r.status` is what it answers next (200 until told otherwise);
 * `r.next(since)` resolves to the first delivery received after the first `since` ones,
 * or fails after `ms`; `r.received` holds every {headers, body, event, status} it took.
 */
export function startReceiver() {
  const r = { status: 200, received: [] };
  const waiters = [];
  const http = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      let event = null;
      try { event = JSON.parse(body); } catch { /* kept as text */ }
      r.received.push({ headers: req.headers, body, event, status: r.status });
      res.writeHead(r.status, { 'Content-Type': 'text/plain' });
      res.end(r.status < 300 ? 'ok' : 'not now');
      for (const w of waiters.splice(0)) w();
    });
  });
  r.next = (since, ms = 20000) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no webhook delivery within ${ms} ms (${r.received.length} so far)`)), ms);
    const check = () => {
      if (r.received.length > since) { clearTimeout(timer); resolve(r.received[since]); } else waiters.push(check);
    };
    check();
  });
  return new Promise((resolve) => http.listen(0, '127.0.0.1', () => {
    r.url = `http://127.0.0.1:${http.address().port}/keypool`;
    r.close = () => { http.closeAllConnections(); http.close(); };
    resolve(r);
  }));
}

/** Whether one of the delivery's `v1,` signatures is by `secret` (whsec_…), per Standard Webhooks. */
export function signedBy(delivery, secret) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const h = delivery.headers;
  const expected = createHmac('sha256', key).update(`${h['webhook-id']}.${h['webhook-timestamp']}.${delivery.body}`).digest();
  return (h['webhook-signature'] || '').split(' ').some((s) => {
    const [version, sig] = s.split(',');
    const got = Buffer.from(sig || '', 'base64');
    return version === 'v1' && got.length === expected.length && timingSafeEqual(got, expected);
  });
}
