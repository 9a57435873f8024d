import { isMotoProcess } from './moto.js';
import { postgresAlive } from './postgres.js';
import { isSimulatorProcess } from './process.js';
import type { LabRepository } from './repositories.js';
import { readLabState } from './state.js';
import { answersSoap } from './vcenter.js';

export interface LabStatus {
  dir: string;
  /** The lab is complete, its simulator process alive and answering SOAP. */
  running: boolean;
  /** `lab up` has not finished (or was interrupted): `lab down` removes what it made. */
  starting: boolean;
  pid: number;
  processAlive: boolean;
  answering: boolean;
  url: string;
  configFile: string;
  createdAt: string;
  vmCount: number;
  /** The repositories the lab configured (`lab`, and `lab-s3` with `--s3`). */
  repositories: LabRepository[];
  /** With `--s3`: the moto server, and whether it is alive. */
  s3?: { endpoint: string; bucket: string; pid: number; alive: boolean };
  /** With `--postgres`: the PostgreSQL server holding the catalog, and whether it runs. */
  postgres?: { url: string; dataDir: string; alive: boolean };
}

/** Whether the lab's simulator process is alive and its URL answers SOAP. */
export async function labStatus(dir: string): Promise<LabStatus> {
  const state = await readLabState(dir);
  const processAlive = state.pid > 0 && (await isSimulatorProcess(state.pid, state.dir));
  const answering = processAlive && (await answersSoap(state.url, state.thumbprint));
  const s3 = state.s3 && { ...state.s3, alive: await isMotoProcess(state.s3.pid, state.s3.port) };
  const postgres = state.postgres && {
    url: state.postgres.url,
    dataDir: state.postgres.dataDir,
    alive: postgresAlive(state.postgres.dataDir),
  };
  return {
    dir: state.dir,
    running:
      processAlive &&
      answering &&
      state.starting !== true &&
      s3?.alive !== false &&
      postgres?.alive !== false,
    starting: state.starting === true,
    pid: state.pid,
    processAlive,
    answering,
    url: state.url,
    configFile: state.configFile,
    createdAt: state.createdAt,
    vmCount: state.vmCount,
    repositories: state.repositories ?? [],
    ...(s3 && { s3: { endpoint: s3.endpoint, bucket: s3.bucket, pid: s3.pid, alive: s3.alive } }),
    ...(postgres && { postgres }),
  };
}
