import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { UsageError } from '../../src/errors.js';
import { type LabState, labDown, labUp } from '../../src/lab/index.js';

/** The lab spec most tests run on (web01, app01, db01 with an RDM, off01, susp01 on two hosts). */
export const STANDARD_SPEC = fileURLToPath(
  new URL('../../../test/fixtures/lab/standard.json', import.meta.url),
);

/** The standard spec parsed afresh, so a test may add to its copy before starting a lab from it. */
// biome-ignore lint/suspicious/noExplicitAny: a spec is plain JSON that tests extend freely
export async function standardSpec(): Promise<any> {
  return JSON.parse(await readFile(STANDARD_SPEC, 'utf8'));
}

/**
 * Reads the YAML configuration at `from`, lets `edit` change the document and writes it to `to` (by default
 * back to `from`). Returns the path written.
 */
export async function editConfig(
  from: string,
  // biome-ignore lint/suspicious/noExplicitAny: tests change whatever part of the document they need
  edit: (doc: any) => void,
  to = from,
): Promise<string> {
  const doc = YAML.parse(await readFile(from, 'utf8'));
  edit(doc);
  await writeFile(to, YAML.stringify(doc));
  return to;
}

/**
 * A copy of the lab's configuration, named `name` in the lab directory, that reaches vCenter at `url` (a fault
 * proxy or an address nobody answers). The pinned thumbprint goes: it belongs to the simulator's certificate.
 */
export function configWithVcenterUrl(lab: TestLab, url: string, name: string): Promise<string> {
  return editConfig(
    lab.configPath,
    (doc) => {
      doc.vcenter.url = url;
      delete doc.vcenter.thumbprint;
    },
    join(lab.dir, name),
  );
}

/** A lab started for a test, in its own temporary directory. */
export interface TestLab {
  /** The lab directory (holds snapkeeper.yaml, lab.json, array/). */
  dir: string;
  configPath: string;
  state: LabState;
  /** The lab's VM of that name (its id, host, disks and their files); throws, naming it, when there is none. */
  vm(name: string): LabState['vms'][number];
  /** Stops the simulator and removes the lab and its temporary directory. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartLabOptions {
  /** Put the array on a loop-mounted btrfs image (needs root: check requireCapability + canMountLoopBtrfs()). */
  btrfs?: boolean;
  delays?: Record<string, number>;
  tls?: boolean;
  sessionIdleTimeoutSeconds?: number;
  /** Also start a moto S3 server and configure repository `lab-s3` (needs moto: `motoAvailable()`). */
  s3?: boolean;
}

/** Default btrfs image size: enough for the small test specs and their snapshots. */
const TEST_IMAGE_BYTES = 512 * 1024 * 1024;

/**
 * Starts a lab from a spec object (or a spec file path) in a fresh directory under the OS temp directory.
 * Callers stop it in `after`/`t.after`.
 */
export async function startLab(spec: object | string, options: StartLabOptions = {}): Promise<TestLab> {
  const root = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-'));
  let specFile: string;
  if (typeof spec === 'string') specFile = spec;
  else {
    specFile = join(root, 'spec.json');
    await writeFile(specFile, JSON.stringify(spec));
  }
  const dir = join(root, 'lab');
  let state: LabState;
  try {
    state = await labUp({
      specFile,
      dir,
      ...(options.btrfs === true && { btrfsImageBytes: TEST_IMAGE_BYTES }),
      ...(options.delays !== undefined && { delays: options.delays }),
      ...(options.tls !== undefined && { tls: options.tls }),
      ...(options.sessionIdleTimeoutSeconds !== undefined && {
        sessionIdleTimeoutSeconds: options.sessionIdleTimeoutSeconds,
      }),
      ...(options.s3 === true && { s3: true }),
    });
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  let stopped = false;
  return {
    dir,
    configPath: state.configFile,
    state,
    vm(name) {
      const vm = state.vms.find((v) => v.name === name);
      if (!vm) throw new Error(`the lab has no VM named ${name}`);
      return vm;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await labDown(dir);
      } catch (err) {
        // A test may have taken the lab down itself; anything else must surface (and keep the directory
        // for inspection: it may still hold a mounted image).
        if (!(err instanceof UsageError && err.code === 'LAB_NOT_FOUND')) throw err;
      }
      await rm(root, { recursive: true, force: true });
    },
  };
}
