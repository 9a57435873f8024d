import { isSimulatorProcess } from './process.js';
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
}

/** Whether the lab's simulator process is alive and its URL answers SOAP. */
export async function labStatus(dir: string): Promise<LabStatus> {
  const state = await readLabState(dir);
  const processAlive = state.pid > 0 && (await isSimulatorProcess(state.pid, state.dir));
  const answering = processAlive && (await answersSoap(state.url, state.thumbprint));
  return {
    dir: state.dir,
    running: processAlive && answering && state.starting !== true,
    starting: state.starting === true,
    pid: state.pid,
    processAlive,
    answering,
    url: state.url,
    configFile: state.configFile,
    createdAt: state.createdAt,
    vmCount: state.vmCount,
  };
}
