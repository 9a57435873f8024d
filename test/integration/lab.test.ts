import assert from 'node:assert/strict';
import { execFile as execFileCb } from 'node:child_process';
import { open, readFile, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { layout, readManifest } from '../../src/arrays/fs/layout.js';
import { loadConfig } from '../../src/config/load.js';
import { SnapkeeperError, UsageError } from '../../src/errors.js';
import { labDiskChunk } from '../../src/lab/diskdata.js';
import { answersSoap, type LabState, labDown, labFiles, labStatus, labUp } from '../../src/lab/index.js';
import { simulatorBinary, startSimulator } from '../../src/lab/simulator.js';
import { pathExists } from '../../src/util/fs.js';
import { STANDARD_SPEC, standardSpec, startLab, type TestLab } from '../helpers/lab.js';

const execFile = promisify(execFileCb);
const CLI = new URL('../../../bin/snapkeeper.js', import.meta.url);

/** A bare SOAP call, so this test does not depend on the project's vSphere client. */
async function soap(
  state: LabState,
  body: string,
  cookie?: string,
): Promise<{ status: number; text: string; cookie?: string }> {
  const envelope =
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">' +
    `<soapenv:Body>${body}</soapenv:Body></soapenv:Envelope>`;
  const u = new URL(state.url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {
      'content-type': 'text/xml; charset=utf-8',
      soapaction: 'urn:vim25/8.0',
    };
    if (cookie !== undefined) headers.cookie = cookie;
    const onResponse = (res: import('node:http').IncomingMessage) => {
      if (u.protocol === 'https:') {
        // The lab's certificate is self-signed: the thumbprint in lab.json is what identifies it.
        const fp = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
        if (fp !== state.thumbprint)
          reject(new Error(`certificate ${fp} does not match ${state.thumbprint}`));
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const setCookie = res.headers['set-cookie']?.[0]?.split(';')[0];
        resolve({
          status: res.statusCode ?? 0,
          text: Buffer.concat(chunks).toString('utf8'),
          cookie: setCookie ?? cookie,
        });
      });
    };
    const req =
      u.protocol === 'https:'
        ? httpsRequest(u, { method: 'POST', headers, agent: false, rejectUnauthorized: false }, onResponse)
        : httpRequest(u, { method: 'POST', headers }, onResponse);
    req.on('error', reject);
    req.end(envelope);
  });
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

async function login(state: LabState, password: string) {
  return soap(
    state,
    `<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>${esc(state.user)}</userName><password>${esc(password)}</password></Login>`,
  );
}

async function properties(
  state: LabState,
  cookie: string,
  type: string,
  id: string,
  paths: string[],
): Promise<string> {
  const res = await soap(
    state,
    `<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>${type}</type>${paths
      .map((p) => `<pathSet>${p}</pathSet>`)
      .join(
        '',
      )}</propSet><objectSet><obj type="${type}">${esc(id)}</obj></objectSet></specSet><options/></RetrievePropertiesEx>`,
    cookie,
  );
  assert.equal(res.status, 200, res.text);
  return res.text;
}

/** Runs a task method and returns the task's result text once it succeeded (the simulator completes tasks before replying). */
async function runTask(state: LabState, cookie: string, body: string): Promise<string> {
  const res = await soap(state, body, cookie);
  assert.equal(res.status, 200, res.text);
  const task = /<returnval type="Task">([^<]+)</.exec(res.text)?.[1];
  assert.ok(task, res.text);
  const info = await properties(state, cookie, 'Task', task, ['info.state', 'info.result']);
  assert.match(info, /<val[^>]*>success<\/val>/, info);
  return info;
}

function countOf(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

/** Gone or a zombie: an orphaned simulator is reaped by whatever init this machine has, maybe never. */
async function processGone(pid: number): Promise<boolean> {
  try {
    return /^\d+ \(.*\) Z/.test(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

describe('lab with the standard spec', () => {
  let lab: TestLab;
  let cookie: string;
  let password: string;

  before(async () => {
    lab = await startLab(await standardSpec());
    password = (await readFile(lab.state.passwordFile, 'utf8')).trim();
    const res = await login(lab.state, password);
    assert.equal(res.status, 200, res.text);
    assert.ok(res.cookie);
    cookie = res.cookie;
  });
  after(async () => {
    await lab?.stop();
  });

  test('status says running; the URL answers SOAP over pinned HTTPS', async () => {
    const s = await labStatus(lab.dir);
    assert.equal(s.running, true);
    assert.equal(s.vmCount, 5);
    assert.match(lab.state.url, /^https:\/\/127\.0\.0\.1:\d+\/sdk$/);
    assert.match(lab.state.thumbprint!, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const res = await soap(
      lab.state,
      '<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></RetrieveServiceContent>',
    );
    assert.equal(res.status, 200);
    assert.match(res.text, /<sessionManager type="SessionManager">SessionManager<\/sessionManager>/);
    assert.match(res.text, /<apiType>VirtualCenter<\/apiType>/);
    const wrongPrint = lab.state.thumbprint!.replace(
      /^../,
      lab.state.thumbprint!.startsWith('00') ? '11' : '00',
    );
    assert.equal(await answersSoap(lab.state.url, wrongPrint), false);
    assert.equal(await answersSoap(lab.state.url, lab.state.thumbprint), true);
  });

  test('login accepts only the lab user and password', async () => {
    const wrong = await login(lab.state, `${password}x`);
    assert.equal(wrong.status, 500);
    assert.match(wrong.text, /InvalidLogin/);
    const otherUser = await soap(
      lab.state,
      `<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>root</userName><password>${esc(password)}</password></Login>`,
    );
    assert.match(otherUser.text, /InvalidLogin/);
    assert.equal((await stat(lab.state.passwordFile)).mode & 0o777, 0o600);
  });

  test('the configuration loads and points at the lab', () => {
    const config = loadConfig(lab.configPath);
    assert.equal(config.vcenter.url, lab.state.url);
    assert.equal(config.vcenter.thumbprint, lab.state.thumbprint);
    assert.equal(config.vcenter.password.reveal(), password);
    assert.equal(config.arrays[0]!.path, lab.state.arrayPath);
    assert.equal(config.catalog.path, join(lab.dir, 'catalog.db'));
    assert.equal(config.defaults.mode, 'SNAPSHOT_EXCL_MEM');
    assert.deepEqual(
      config.tasks.map((t) => [t.name, t.select.vms]),
      [['lab-all', ['*']]],
    );
  });

  test('flat and independent disks hold their deterministic bytes; RDMs have mapping files', async () => {
    const spec = await standardSpec();
    const vms = spec.datacenters[0].vms as {
      name: string;
      disks: { sizeMB: number; rdm?: string; datastore?: string }[];
    }[];
    assert.deepEqual(lab.state.vms.map((v) => v.name).sort(), vms.map((v) => v.name).sort());
    for (const vm of vms) {
      const got = lab.vm(vm.name);
      assert.deepEqual(
        got.disks.map((d) => d.index),
        vm.disks.map((_, i) => i),
      );
      for (const [i, d] of vm.disks.entries()) {
        const disk = got.disks[i]!;
        if (d.rdm !== undefined) {
          assert.equal(disk.kind, d.rdm === 'physical' ? 'rdm-physical' : 'rdm-virtual');
          assert.match(await readFile(disk.path, 'utf8'), /RawDeviceMap/);
          continue;
        }
        assert.ok(disk.path.startsWith(`${layout.volume(lab.state.arrayPath, d.datastore!)}/`), disk.path);
        const size = d.sizeMB * 1024 * 1024;
        assert.equal((await stat(disk.path)).size, size);
        const data = await readFile(disk.path);
        assert.ok(data.equals(labDiskChunk(vm.name, i, 0, size)), `${vm.name} disk ${i} content`);
      }
    }
    const app01 = lab.vm('app01');
    assert.deepEqual(
      app01.disks.map((d) => d.kind),
      ['flat', 'independent'],
    );
  });

  test('datastores are VMFS on the array volumes; hosts see every LUN', async () => {
    const manifest = await readManifest(lab.state.arrayPath);
    const res = await soap(
      lab.state,
      `<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>Datastore</type><pathSet>summary</pathSet><pathSet>info</pathSet><pathSet>host</pathSet></propSet><objectSet><obj type="Folder">group-d1</obj><skip>true</skip><selectSet xsi:type="TraversalSpec" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><name>f</name><type>Folder</type><path>childEntity</path><skip>false</skip><selectSet><name>f</name></selectSet><selectSet><name>dc</name></selectSet></selectSet><selectSet xsi:type="TraversalSpec" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><name>dc</name><type>Datacenter</type><path>datastoreFolder</path><skip>false</skip><selectSet><name>f</name></selectSet></selectSet></objectSet></specSet><options/></RetrievePropertiesEx>`,
      cookie,
    );
    assert.equal(res.status, 200, res.text);
    const objects = res.text.split('<objects>').slice(1);
    assert.equal(objects.length, 2, 'each datastore listed once');
    for (const vol of manifest.volumes) {
      const obj = objects.find((o) => o.includes(`<name>${vol.name}</name>`));
      assert.ok(obj, vol.name);
      assert.match(obj, /<type>VMFS<\/type>/);
      assert.match(obj, new RegExp(`<diskName>${vol.lun}</diskName>`));
      assert.ok(obj.includes(`<url>${layout.volume(lab.state.arrayPath, vol.name)}</url>`));
      assert.equal(countOf(obj, '<DatastoreHostMount>'), 3, 'mounted on all three hosts');
    }
    const esx02 = lab.vm('db01');
    assert.ok(esx02);
    const hosts = await soap(
      lab.state,
      `<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>HostSystem</type><pathSet>config.storageDevice.scsiLun</pathSet></propSet><objectSet><obj type="ContainerView">${await hostView()}</obj><skip>true</skip><selectSet xsi:type="TraversalSpec" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><name>v</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet><options/></RetrievePropertiesEx>`,
      cookie,
    );
    const hostObjects = hosts.text.split('<objects>').slice(1);
    assert.equal(hostObjects.length, 3);
    for (const h of hostObjects) {
      for (const lun of [
        ...manifest.volumes.map((v) => v.lun),
        'naa.600a0980383030534a3f463045727a71',
        'naa.600a0980383030534a3f463045727a72',
      ]) {
        assert.ok(h.includes(`<canonicalName>${lun}</canonicalName>`), lun);
      }
    }

    async function hostView(): Promise<string> {
      const r = await soap(
        lab.state,
        '<CreateContainerView xmlns="urn:vim25"><_this type="ViewManager">ViewManager</_this><container type="Folder">group-d1</container><type>HostSystem</type><recursive>true</recursive></CreateContainerView>',
        cookie,
      );
      const id = /<returnval type="ContainerView">([^<]+)</.exec(r.text)?.[1];
      assert.ok(id, r.text);
      return id;
    }
  });

  test('power states follow the spec', async () => {
    for (const [name, power] of [
      ['web01', 'poweredOn'],
      ['off01', 'poweredOff'],
      ['susp01', 'suspended'],
    ] as const) {
      const id = lab.vm(name).id;
      const text = await properties(lab.state, cookie, 'VirtualMachine', id, ['runtime.powerState']);
      assert.match(text, new RegExp(`>${power}</val>`), name);
    }
  });

  test('VM snapshots work on a VM with injected RDM disks, and the RDMs stay', async () => {
    const id = lab.vm('db01').id;
    const devices = async () =>
      properties(lab.state, cookie, 'VirtualMachine', id, ['config.hardware.device']);
    const before = await devices();
    assert.equal(countOf(before, 'VirtualDiskRawDiskMappingVer1BackingInfo"'), 2);
    assert.match(before, /<compatibilityMode>physicalMode<\/compatibilityMode>/);
    assert.match(before, /<compatibilityMode>virtualMode<\/compatibilityMode>/);
    assert.match(
      before,
      /<deviceName>\/vmfs\/devices\/disks\/naa\.600a0980383030534a3f463045727a71<\/deviceName>/,
    );
    assert.equal(countOf(before, 'VirtualDiskFlatVer2BackingInfo"'), 1);

    const created = await runTask(
      lab.state,
      cookie,
      `<CreateSnapshot_Task xmlns="urn:vim25"><_this type="VirtualMachine">${id}</_this><name>snapkeeper-test</name><memory>false</memory><quiesce>true</quiesce></CreateSnapshot_Task>`,
    );
    const snapshot = /type="VirtualMachineSnapshot">([^<]+)</.exec(created)?.[1];
    assert.ok(snapshot, created);
    assert.match(
      await properties(lab.state, cookie, 'VirtualMachine', id, ['snapshot']),
      /<name>snapkeeper-test<\/name>/,
    );

    await runTask(
      lab.state,
      cookie,
      `<RemoveSnapshot_Task xmlns="urn:vim25"><_this type="VirtualMachineSnapshot">${snapshot}</_this><removeChildren>false</removeChildren></RemoveSnapshot_Task>`,
    );
    assert.doesNotMatch(
      await properties(lab.state, cookie, 'VirtualMachine', id, ['snapshot']),
      /snapkeeper-test/,
    );
    const afterRemove = await devices();
    assert.equal(countOf(afterRemove, 'VirtualDiskRawDiskMappingVer1BackingInfo"'), 2);
    assert.equal(countOf(afterRemove, 'VirtualDiskFlatVer2BackingInfo"'), 1);
    // The simulator still serves (a crash in the request would have closed the connection).
    assert.equal((await labStatus(lab.dir)).running, true);
  });

  test('reconfiguring and destroying a VM with RDM disks work', async () => {
    const id = lab.vm('db01').id;
    await runTask(
      lab.state,
      cookie,
      `<ReconfigVM_Task xmlns="urn:vim25"><_this type="VirtualMachine">${id}</_this><spec><memoryMB>512</memoryMB></spec></ReconfigVM_Task>`,
    );
    const after = await properties(lab.state, cookie, 'VirtualMachine', id, ['config.hardware']);
    assert.match(after, /<memoryMB>512<\/memoryMB>/);
    assert.equal(countOf(after, 'VirtualDiskRawDiskMappingVer1BackingInfo"'), 2);
    await runTask(
      lab.state,
      cookie,
      `<PowerOffVM_Task xmlns="urn:vim25"><_this type="VirtualMachine">${id}</_this></PowerOffVM_Task>`,
    );
    await runTask(
      lab.state,
      cookie,
      `<Destroy_Task xmlns="urn:vim25"><_this type="VirtualMachine">${id}</_this></Destroy_Task>`,
    );
    const gone = await soap(
      lab.state,
      `<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet></propSet><objectSet><obj type="VirtualMachine">${id}</obj></objectSet></specSet><options/></RetrievePropertiesEx>`,
      cookie,
    );
    assert.match(gone.text, /ManagedObjectNotFound/);
    assert.equal((await labStatus(lab.dir)).running, true);
  });

  test('a second lab up in the same directory is refused and leaves the lab running', async () => {
    await assert.rejects(labUp({ specFile: STANDARD_SPEC, dir: lab.dir }), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.code, 'LAB_EXISTS');
      return true;
    });
    assert.equal((await labStatus(lab.dir)).running, true);
  });

  test('the CLI reports status as JSON', async () => {
    const { stdout } = await execFile(process.execPath, [
      CLI.pathname,
      '--json',
      'lab',
      'status',
      '--dir',
      lab.dir,
    ]);
    const doc = JSON.parse(stdout);
    assert.equal(doc.running, true);
    assert.equal(doc.pid, lab.state.pid);
  });
});

describe('lab lifecycle', () => {
  test('lab down stops the simulator and removes everything; a second down is a usage error', async () => {
    const lab = await startLab(await standardSpec());
    try {
      const { pid, url, thumbprint, arrayPath } = lab.state;
      // Something a backup would leave behind: the catalog goes with the lab.
      await (await open(join(lab.dir, labFiles.catalog), 'w')).close();
      await labDown(lab.dir);
      assert.equal(await pathExists(lab.dir), false, 'the lab directory is gone');
      assert.equal(await pathExists(arrayPath), false);
      // The test process started the simulator, so until Node reaps it the exited process is a zombie.
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      assert.ok(stat === '' || /^\d+ \(.*\) Z/.test(stat), `the simulator still runs: ${stat}`);
      assert.equal(await answersSoap(url, thumbprint), false);
      await assert.rejects(
        labDown(lab.dir),
        (err: unknown) => err instanceof UsageError && err.code === 'LAB_NOT_FOUND',
      );
      await assert.rejects(
        labStatus(lab.dir),
        (err: unknown) => err instanceof UsageError && err.code === 'LAB_NOT_FOUND',
      );
    } finally {
      await lab.stop().catch(() => {});
    }
  });

  test('a bad spec creates nothing', async () => {
    const spec = await standardSpec();
    spec.datacenters[0].vms[0].host = 'nowhere';
    const dir = join(tmpdir(), `snapkeeper-lab-bad-${process.pid}`);
    await assert.rejects(
      startLab(spec),
      (err: unknown) => err instanceof UsageError && /vms\[0\]\.host/.test(err.message),
    );
    const { writeFile, mkdtemp, rm } = await import('node:fs/promises');
    const root = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-bad-'));
    try {
      const file = join(root, 'spec.json');
      await writeFile(file, JSON.stringify(spec));
      await assert.rejects(labUp({ specFile: file, dir }), UsageError);
      assert.equal(await pathExists(dir), false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test('a simulator that fails to start is reported with its log, and everything made is undone', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const root = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-fail-'));
    try {
      const dir = join(root, 'lab');
      await assert.rejects(
        labUp({
          specFile: STANDARD_SPEC,
          dir,
          env: { ...process.env, SNAPKEEPER_SIMULATOR: '/bin/false' },
        }),
        (err: unknown) =>
          err instanceof SnapkeeperError &&
          err.code === 'LAB_SIMULATOR_FAILED' &&
          /exit code 1/.test(err.message),
      );
      assert.equal(await pathExists(dir), false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test('the simulator refuses a resolved spec with a default left out, instead of applying its own', async () => {
    const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
    const root = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-resolved-'));
    try {
      const binary = await simulatorBinary();
      await writeFile(join(root, 'password'), 'secret\n');
      const ds = { name: 'ds', capacityGB: 1, path: root, lun: 'naa.6000000000000000000000000000000a' };
      const vm = {
        name: 'vm1',
        host: 'esx',
        power: 'poweredOn',
        tools: 'running',
        datastore: 'ds',
        disks: [{ datastore: 'ds', sizeMB: 1, mode: 'persistent' }],
      };
      const cases: [string, object, RegExp][] = [
        ['power', { ...vm, power: undefined }, /vm vm1: the resolved spec needs power/],
        ['datastore', { ...vm, datastore: undefined }, /vm vm1: the resolved spec needs datastore/],
        [
          'mode',
          { ...vm, disks: [{ datastore: 'ds', sizeMB: 1 }] },
          /vm vm1: disk 0: the resolved spec needs mode/,
        ],
        ['tools', { ...vm, tools: undefined }, /vm vm1: the resolved spec needs tools/],
      ];
      for (const [what, v, message] of cases) {
        const specFile = join(root, `spec-${what}.json`);
        await writeFile(
          specFile,
          JSON.stringify({ datacenters: [{ name: 'DC', hosts: ['esx'], datastores: [ds], vms: [v] }] }),
        );
        await assert.rejects(
          startSimulator({
            binary,
            specFile,
            readyFile: join(root, `ready-${what}.json`),
            logFile: join(root, `log-${what}`),
            user: 'u',
            passwordFile: join(root, 'password'),
            tls: false,
          }),
          (err: unknown) =>
            err instanceof SnapkeeperError &&
            err.code === 'LAB_SIMULATOR_FAILED' &&
            message.test(err.message),
          what,
        );
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test('plain HTTP and per-method delays', async () => {
    const spec = {
      datacenters: [
        {
          name: 'DC',
          hosts: ['esx'],
          datastores: [{ name: 'ds', capacityGB: 1 }],
          vms: [{ name: 'vm1', host: 'esx', disks: [{ datastore: 'ds', sizeMB: 1 }] }],
        },
      ],
    };
    const lab = await startLab(spec, { tls: false, delays: { CreateSnapshot_Task: 400 } });
    try {
      assert.match(lab.state.url, /^http:\/\//);
      assert.equal(lab.state.thumbprint, undefined);
      assert.equal(loadConfig(lab.configPath).vcenter.thumbprint, undefined);
      assert.equal((await labStatus(lab.dir)).running, true);
      const password = (await readFile(lab.state.passwordFile, 'utf8')).trim();
      const { cookie } = await login(lab.state, password);
      const id = lab.state.vms[0]!.id;
      const t0 = performance.now();
      await properties(lab.state, cookie!, 'VirtualMachine', id, ['name']);
      const plain = performance.now() - t0;
      const t1 = performance.now();
      await runTask(
        lab.state,
        cookie!,
        `<CreateSnapshot_Task xmlns="urn:vim25"><_this type="VirtualMachine">${id}</_this><name>s</name><memory>false</memory><quiesce>false</quiesce></CreateSnapshot_Task>`,
      );
      const delayed = performance.now() - t1;
      assert.ok(delayed >= 400, `CreateSnapshot_Task took ${delayed} ms`);
      assert.ok(plain < 400, `RetrievePropertiesEx took ${plain} ms`);
    } finally {
      await lab.stop();
    }
  });

  test('idle sessions expire after --session-idle-timeout', async () => {
    const spec = { datacenters: [{ name: 'DC', hosts: ['esx'], vms: [] }] };
    const lab = await startLab(spec, { sessionIdleTimeoutSeconds: 1 });
    try {
      const password = (await readFile(lab.state.passwordFile, 'utf8')).trim();
      const { cookie } = await login(lab.state, password);
      const current = () =>
        soap(
          lab.state,
          '<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>SessionManager</type><pathSet>currentSession</pathSet></propSet><objectSet><obj type="SessionManager">SessionManager</obj></objectSet></specSet><options/></RetrievePropertiesEx>',
          cookie,
        );
      assert.match((await current()).text, /<userName>administrator@vsphere\.local<\/userName>/);
      // Idleness is the behaviour under test: any request would keep the session alive, so just wait.
      // The simulator checks once per timeout period, so 1 s idle expires within 2 s.
      await new Promise((r) => setTimeout(r, 2500));
      assert.doesNotMatch((await current()).text, /administrator@vsphere\.local/);
    } finally {
      await lab.stop();
    }
  });

  test('an interrupted lab up leaves a lab that lab down removes', async () => {
    const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
    const { spawn } = await import('node:child_process');
    const root = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-int-'));
    const dir = join(root, 'lab');
    try {
      // One large disk keeps lab up busy filling data after the simulator started: that is where it is killed.
      const spec = {
        datacenters: [
          {
            name: 'DC',
            hosts: ['esx'],
            datastores: [{ name: 'ds', capacityGB: 10 }],
            vms: [{ name: 'big', host: 'esx', disks: [{ datastore: 'ds', sizeMB: 3072 }] }],
          },
        ],
      };
      const specFile = join(root, 'spec.json');
      await writeFile(specFile, JSON.stringify(spec));
      const child = spawn(process.execPath, [CLI.pathname, 'lab', 'up', '--spec', specFile, '--dir', dir], {
        stdio: 'ignore',
      });
      const exited = new Promise((r) => child.on('exit', r));
      let state: LabState | undefined;
      for (let i = 0; i < 2400 && !(state && state.pid > 0); i++) {
        await new Promise((r) => setTimeout(r, 25));
        state = await readFile(join(dir, labFiles.state), 'utf8').then(JSON.parse, () => undefined);
      }
      assert.ok(
        state && state.pid > 0 && state.starting === true,
        'lab up got as far as starting the simulator',
      );
      child.kill('SIGKILL');
      await exited;
      const s = await labStatus(dir);
      assert.equal(s.starting, true);
      assert.equal(s.running, false);
      assert.equal(s.processAlive, true, 'the simulator outlives the interrupted lab up');
      await assert.rejects(
        labUp({ specFile, dir }),
        (err: unknown) => err instanceof UsageError && err.code === 'LAB_EXISTS',
      );
      await labDown(dir);
      assert.equal(await pathExists(dir), false);
      assert.equal(await processGone(state!.pid), true);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test('a lab whose simulator died reports not running and still comes down', async () => {
    const lab = await startLab({ datacenters: [{ name: 'DC', hosts: ['esx'] }] });
    try {
      process.kill(lab.state.pid, 'SIGKILL');
      let s = await labStatus(lab.dir);
      // The kill is asynchronous: wait for the process to be gone (bounded), not for a fixed time.
      for (let i = 0; i < 200 && s.processAlive; i++) {
        await new Promise((r) => setTimeout(r, 25));
        s = await labStatus(lab.dir);
      }
      assert.equal(s.running, false);
      assert.equal(s.processAlive, false);
      const { stdout } = await execFile(process.execPath, [CLI.pathname, 'lab', 'status', '--dir', lab.dir]);
      assert.match(stdout, /is NOT running/);
      await labDown(lab.dir);
      assert.equal(await pathExists(lab.dir), false);
    } finally {
      await lab.stop().catch(() => {});
    }
  });
});
