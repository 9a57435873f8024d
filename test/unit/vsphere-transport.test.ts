import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { type TestContext, test } from 'node:test';
import {
  HttpTransport,
  normaliseFingerprint,
  retryIdempotentReads,
  TransportError,
} from '../../src/vsphere/transport.js';

async function serve(handler: http.RequestListener) {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sdk`;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const req = (method = 'M') => ({ method, action: 'urn:vim25/8.0', body: '<x/>' });

test('no more than maxConcurrentRequests are in flight; the rest queue', async (t) => {
  const total = 10;
  const limit = 3;
  let answered = 0;
  let maxStarted = 0;
  let maxHeld = 0;
  const held: http.ServerResponse[] = [];
  // `tr.roundTrips` counts requests the client let through its limit; minus those the server has answered,
  // that is what the client has in flight. Without a limit all ten would be counted before the first arrives.
  const server = await serve((r, res) => {
    r.resume();
    r.on('end', () => {
      maxStarted = Math.max(maxStarted, tr.roundTrips - answered);
      held.push(res);
      maxHeld = Math.max(maxHeld, held.length);
      if (held.length === limit || tr.roundTrips === total) {
        for (const h of held.splice(0)) {
          answered++;
          h.end('<ok/>');
        }
      }
    });
  });
  t.after(() => server.close());
  const tr = new HttpTransport({ url: server.url, maxConcurrentRequests: limit, timeoutMs: 5000 });
  t.after(() => tr.close());
  const answers = await Promise.all(Array.from({ length: total }, () => tr.send(req())));
  assert.ok(answers.every((a) => a.status === 200 && a.body === '<ok/>'));
  assert.equal(maxStarted, limit);
  assert.equal(maxHeld, limit);
  assert.equal(tr.roundTrips, total);
});

test('a server that never answers times out instead of hanging', async (t) => {
  const server = await serve(() => {});
  t.after(() => server.close());
  const tr = new HttpTransport({ url: server.url, maxConcurrentRequests: 2, timeoutMs: 200 });
  t.after(() => tr.close());
  await assert.rejects(tr.send(req('RetrievePropertiesEx')), (err: unknown) => {
    assert.ok(err instanceof TransportError);
    assert.equal(err.code, 'VCENTER_TIMEOUT');
    assert.equal(err.reusedSocket, false);
    assert.match(err.message, /RetrievePropertiesEx/);
    return true;
  });
});

test('a reset or a truncated answer is a connection error', async (t) => {
  const server = await serve((r, res) => {
    r.resume();
    r.on('end', () => {
      if (r.url?.includes('truncate')) {
        res.writeHead(200, { 'content-length': '100' });
        res.write('<partial');
        setImmediate(() => res.socket?.destroy());
      } else res.socket?.destroy();
    });
  });
  t.after(() => server.close());
  for (const path of ['/sdk', '/truncate']) {
    const tr = new HttpTransport({
      url: server.url.replace('/sdk', path),
      maxConcurrentRequests: 1,
      timeoutMs: 5000,
    });
    await assert.rejects(tr.send(req()), { code: 'VCENTER_CONNECTION_FAILED' }, path);
    tr.close();
  }
  const refused = new HttpTransport({
    url: 'http://127.0.0.1:1/sdk',
    maxConcurrentRequests: 1,
    timeoutMs: 5000,
  });
  await assert.rejects(refused.send(req()), (err: unknown) => {
    assert.ok(err instanceof TransportError);
    assert.equal(err.reusedSocket, false);
    assert.match(err.message, /ECONNREFUSED/);
    return true;
  });
});

test('aborting frees a queued request and the one in flight', async (t) => {
  const server = await serve(() => {});
  t.after(() => server.close());
  const tr = new HttpTransport({ url: server.url, maxConcurrentRequests: 1, timeoutMs: 60_000 });
  t.after(() => tr.close());
  const ac = new AbortController();
  const first = tr.send({ ...req(), signal: ac.signal });
  const queued = tr.send({ ...req(), signal: ac.signal });
  ac.abort(new Error('cancelled by test'));
  await assert.rejects(first, /cancelled by test/);
  await assert.rejects(queued, /cancelled by test/);
});

test('fingerprints normalise with or without colons, any case', () => {
  assert.equal(normaliseFingerprint('ab:cd:ef'), 'AB:CD:EF');
  assert.equal(normaliseFingerprint('abcdef'), 'AB:CD:EF');
});

/** A TCP server that accepts connections and never says a word (no TLS handshake, no HTTP). */
async function silentTcpServer() {
  const server = net.createServer();
  const sockets: net.Socket[] = [];
  const closed: Promise<void>[] = [];
  let onAccept: () => void = () => {};
  server.on('connection', (s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.resume(); // read (and ignore) the ClientHello, so the client's close is seen
    closed.push(once(s, 'close').then(() => undefined));
    onAccept();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}/sdk`,
    sockets,
    /** Resolves once `n` connections were accepted. */
    accepted: (n: number) =>
      new Promise<void>((resolve) => {
        if (sockets.length >= n) return resolve();
        onAccept = () => sockets.length >= n && resolve();
      }),
    /** Resolves when every accepted connection was closed by the client; fails after `boundMs`. */
    allClosed: (boundMs: number) =>
      Promise.race([
        Promise.all(closed).then(() => undefined),
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`client left its socket open for more than ${boundMs} ms`)),
            boundMs,
          ).unref(),
        ),
      ]),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const PIN = 'AA:'.repeat(31).concat('AA');

/** A server that never completes TLS, and a transport pinned to a certificate, both closed after the test. */
async function pinnedToSilentServer(t: TestContext, timeoutMs: number) {
  const server = await silentTcpServer();
  t.after(() => server.close());
  const tr = new HttpTransport({ url: server.url, thumbprint: PIN, maxConcurrentRequests: 2, timeoutMs });
  t.after(() => tr.close());
  return { server, tr };
}

test('a pinned server that accepts TCP but never completes TLS times out and leaves no socket behind', async (t) => {
  const { server, tr } = await pinnedToSilentServer(t, 200);
  await assert.rejects(tr.send(req('RetrieveServiceContent')), (err: unknown) => {
    assert.ok(err instanceof TransportError);
    assert.equal(err.code, 'VCENTER_TIMEOUT');
    return true;
  });
  assert.equal(server.sockets.length, 1);
  // The handshake timeout destroyed the pending socket: the server sees the connection end.
  await server.allClosed(5000);
});

test('close() destroys a pinned socket still in its TLS handshake', async (t) => {
  const { server, tr } = await pinnedToSilentServer(t, 600_000);
  const ac = new AbortController();
  const pending = tr.send({ ...req('RetrieveServiceContent'), signal: ac.signal });
  await server.accepted(1);
  ac.abort(new Error('cancelled by test'));
  await assert.rejects(pending, /cancelled by test/);
  // The request is gone but its socket, not yet handed over, is still handshaking: close() must end it.
  tr.close();
  await server.allClosed(5000);
});

test('retryIdempotentReads: a read that fails on a reused keep-alive socket is sent once more', async (t) => {
  // The server drops a request marked `drop` when it arrives on a socket that already served one.
  const served = new WeakMap<net.Socket, number>();
  const arrived: string[] = [];
  const server = await serve((r, res) => {
    const chunks: Buffer[] = [];
    r.on('data', (c: Buffer) => chunks.push(c));
    r.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      arrived.push(body);
      const n = served.get(r.socket) ?? 0;
      served.set(r.socket, n + 1);
      if (body.includes('drop') && n > 0) return r.socket.destroy();
      res.end('<ok/>');
    });
  });
  t.after(() => server.close());
  const tr = new HttpTransport({ url: server.url, maxConcurrentRequests: 1, timeoutMs: 5000 });
  t.after(() => tr.close());
  const send = retryIdempotentReads(tr.send);
  const drop = (method: string) => ({ method, action: 'urn:vim25/8.0', body: '<drop/>' });

  await send(req('Login'));
  const answer = await send(drop('RetrievePropertiesEx'));
  assert.equal(answer.body, '<ok/>');
  assert.equal(arrived.length, 3, 'Login, the dropped read, its retry');

  // Not a read: the drop surfaces, nothing is sent again.
  await send(req('Login'));
  const before = arrived.length;
  await assert.rejects(send(drop('CreateSnapshot_Task')), (err: unknown) => {
    assert.ok(err instanceof TransportError);
    assert.equal(err.code, 'VCENTER_CONNECTION_FAILED');
    assert.equal(err.reusedSocket, true);
    return true;
  });
  assert.equal(arrived.length, before + 1);
});

test('retryIdempotentReads: a fresh socket that fails is not retried', async () => {
  let calls = 0;
  const refused = new HttpTransport({
    url: 'http://127.0.0.1:1/sdk',
    maxConcurrentRequests: 1,
    timeoutMs: 5000,
  });
  const send = retryIdempotentReads((r) => {
    calls++;
    return refused.send(r);
  });
  await assert.rejects(send(req('RetrievePropertiesEx')), { code: 'VCENTER_CONNECTION_FAILED' });
  assert.equal(calls, 1);
  refused.close();
});
