import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ExitCode, UsageError } from '../../src/errors.js';

const PIN = 'AA:'.repeat(31).concat('AA');

function yaml(vcenter: string): string {
  return [
    'vcenter:',
    '  user: backup@vsphere.local',
    '  passwordEnv: VC_PASSWORD',
    ...vcenter.split('\n').map((l) => `  ${l}`),
    'arrays:',
    '  - { name: array1, type: fs, path: /srv/array1 }',
    '',
  ].join('\n');
}

const env = { VC_PASSWORD: 'secret' };

function refusedOnThumbprint(text: string, reason: RegExp): void {
  assert.throws(
    () => parseConfig(text, '/etc/snapkeeper/snapkeeper.yaml', env),
    (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.code, 'CONFIG_INVALID');
      assert.equal(err.exitCode, ExitCode.usage);
      assert.match(err.message, /\/etc\/snapkeeper\/snapkeeper\.yaml/);
      assert.match(err.message, /vcenter\.thumbprint: /);
      assert.match(err.message, reason);
      return true;
    },
  );
}

test('a pinned thumbprint with a plain http:// URL is refused at load', () => {
  refusedOnThumbprint(yaml(`url: http://vc.example/sdk\nthumbprint: "${PIN}"`), /https/);
});

test('a pinned thumbprint together with insecure: true is refused at load', () => {
  refusedOnThumbprint(yaml(`url: https://vc.example/sdk\nthumbprint: "${PIN}"\ninsecure: true`), /insecure/);
});

test('a thumbprint on https, insecure alone, or http without a pin load', () => {
  const pinned = parseConfig(yaml(`url: https://vc.example/sdk\nthumbprint: "${PIN}"`), '/x.yaml', env);
  assert.equal(pinned.vcenter.thumbprint, PIN);
  assert.equal(pinned.vcenter.insecure, false);
  const insecure = parseConfig(yaml('url: https://vc.example/sdk\ninsecure: true'), '/x.yaml', env);
  assert.equal(insecure.vcenter.insecure, true);
  const plain = parseConfig(yaml('url: http://vc.example/sdk'), '/x.yaml', env);
  assert.equal(plain.vcenter.thumbprint, undefined);
});
