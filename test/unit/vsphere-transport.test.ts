import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { HttpTransport, normaliseFingerprint, TransportError } from '../../src/vsphere/transport.js';

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
    assert.equal(err.connected, true);
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
    assert.equal(err.connected, false);
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
