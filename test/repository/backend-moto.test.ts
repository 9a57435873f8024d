import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HeadBucketCommand } from '@aws-sdk/client-s3';
import { isMotoProcess, motoClient, startMoto, stopMotoProcess } from '../../src/lab/moto.js';
import { fileMoto } from '../helpers/moto.js';

const moto = fileMoto();

describe('lab moto server', () => {
  it('answers S3 and makes buckets, with Object Lock where asked', async (t) => {
    if (!moto.require(t)) return;
    const plain = await moto.bucket();
    const locked = await moto.bucket({ objectLock: true });
    const client = motoClient(moto.endpoint());
    try {
      for (const b of [plain, locked]) await client.send(new HeadBucketCommand({ Bucket: b }));
      const { GetObjectLockConfigurationCommand } = await import('@aws-sdk/client-s3');
      const conf = await client.send(new GetObjectLockConfigurationCommand({ Bucket: locked }));
      assert.equal(conf.ObjectLockConfiguration?.ObjectLockEnabled, 'Enabled');
      await assert.rejects(client.send(new GetObjectLockConfigurationCommand({ Bucket: plain })));
    } finally {
      client.destroy();
    }
  });

  it('a detached server is found by pid and port and stopped by a later caller', async (t) => {
    if (!moto.require(t)) return;
    const server = await startMoto({ detached: true });
    try {
      assert.equal(await isMotoProcess(server.pid, server.port), true);
      assert.equal(await isMotoProcess(server.pid, server.port + 1), false);
      await stopMotoProcess(server.pid, server.port);
      assert.equal(await isMotoProcess(server.pid, server.port), false);
      await assert.rejects(fetch(`${server.endpoint}/`));
    } finally {
      await server.stop();
    }
  });

  it('a port already taken is a clear start failure, not a hang', async (t) => {
    if (!moto.require(t)) return;
    await assert.rejects(startMoto({ port: moto.server().port, timeoutMs: 30_000 }), (err: Error) => {
      assert.match(err.message, /port \d+ is in use/);
      return true;
    });
  });
});

describe('lab moto server tied to its process', () => {
  it('dies with the process that started it, even by SIGKILL', async (t) => {
    if (!moto.require(t)) return;
    const { spawn } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const mod = fileURLToPath(new URL('../../src/lab/moto.js', import.meta.url));
    const code = `import('${mod}').then(async (m) => { const s = await m.startMoto(); console.log(JSON.stringify({ pid: s.pid, port: s.port })); setInterval(() => {}, 1000); });`;
    const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('\n')) resolve(buf.trim());
      });
      child.once('exit', () => reject(new Error(`child exited early: ${buf}`)));
    });
    const { pid, port } = JSON.parse(line) as { pid: number; port: number };
    assert.equal(await isMotoProcess(pid, port), true);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // PDEATHSIG is delivered as the parent dies; the kernel needs no time we could wait out, but reaping does.
    for (let i = 0; i < 200 && (await isMotoProcess(pid, port)); i++)
      await new Promise((r) => setTimeout(r, 25));
    assert.equal(await isMotoProcess(pid, port), false);
  });
});
