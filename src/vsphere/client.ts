import type { VcenterConfig } from '../config/load.js';
import { AuthenticationError, errorMessage, SnapkeeperError } from '../errors.js';
import type { Inventory, PowerState, VmSnapshotRef } from '../model/inventory.js';
import {
  faultFromLocalized,
  faultFromSoap,
  isFault,
  VcenterUnreachableError,
  VsphereFault,
} from './faults.js';
import { fetchInventory, flattenSnapshots } from './inventory.js';
import { type CallOptions, type Invoker, retrieveOne, type ServiceContent } from './property.js';
import type {
  CreateVmSnapshotOptions,
  CreateVmSpec,
  DiskChanges,
  OperationOptions,
  VcenterSession,
  VmDevices,
} from './session.js';
import { HttpTransport, retryIdempotentReads, type Transport, TransportError } from './transport.js';
import * as vmOps from './vm-ops.js';
import {
  asArray,
  asObject,
  el,
  envelope,
  type MoRef,
  moRef,
  parseXml,
  soapBody,
  text,
  type XmlNode,
  type XmlObject,
} from './xml.js';

export interface ConnectOptions {
  /**
   * Wraps the transport (fault injection, logging); applied once, around every request. It sits outside the
   * built-in retry of read methods on a stale keep-alive socket (transport.ts retryIdempotentReads).
   */
  transportWrapper?: (inner: Transport) => Transport;
  signal?: AbortSignal;
}

/** The API version we speak until the server tells us its own. */
const INITIAL_API_VERSION = '6.5';
const SERVICE_INSTANCE: MoRef = { type: 'ServiceInstance', value: 'ServiceInstance' };
const PROPERTY_READS = new Set(['RetrievePropertiesEx', 'ContinueRetrievePropertiesEx']);

/**
 * The simulator answers a property read on an expired session with a `missingSet` entry whose fault is
 * NotAuthenticated instead of a SOAP fault (vCenter sends the fault). Treat both alike, so the transparent
 * re-login happens and a VM is never reported missing merely because the session expired.
 */
function assertAuthenticatedRead(returnval: XmlNode | XmlNode[] | undefined, method: string): void {
  const result = asObject(returnval);
  for (const o of asArray(result?.objects)) {
    for (const m of asArray(asObject(o)?.missingSet)) {
      const faultType = asObject(asObject(asObject(m)?.fault)?.fault)?.$xsiType;
      if (faultType === 'NotAuthenticated') {
        throw new VsphereFault(
          'NotAuthenticated',
          `vSphere fault NotAuthenticated (${method})`,
          undefined,
          method,
        );
      }
    }
  }
}

// Calls that must not trigger a transparent re-login: they are the login machinery itself.
const NO_RELOGIN = new Set(['Login', 'Logout', 'RetrieveServiceContent', 'TerminateSession']);

/**
 * Logs in to vCenter and returns the session. Connection failures here (down, refused, TLS refused) are
 * VcenterUnreachableError (exit 3), a refused login is AuthenticationError VCENTER_LOGIN_FAILED (exit 3),
 * a pinned thumbprint that does not match is UsageError TLS_THUMBPRINT_MISMATCH.
 */
export async function connect(config: VcenterConfig, options: ConnectOptions = {}): Promise<Vcenter> {
  const url = new URL(config.url);
  // As govmomi: a bare host means the standard SDK endpoint.
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/sdk';
  const http = new HttpTransport({
    url: url.toString(),
    ...(config.thumbprint === undefined ? {} : { thumbprint: config.thumbprint }),
    insecure: config.insecure,
    maxConcurrentRequests: config.maxConcurrentRequests,
    timeoutMs: config.timeoutSeconds * 1000,
  });
  const vc = new Vcenter(config, http, options.transportWrapper);
  try {
    await vc.open(options.signal);
  } catch (err) {
    http.close();
    throw err;
  }
  return vc;
}

/** Strips the URL's credentials and path so messages name the server only. */
function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(invalid url)';
  }
}

/**
 * A logged-in vCenter session: the domain operations of VcenterSession plus a small low-level surface
 * (`call`, `runTask`, `serviceContent`) for features that need other vim25 methods (restore, mount).
 */
export class Vcenter implements VcenterSession, Invoker {
  readonly #config: VcenterConfig;
  readonly #http: HttpTransport;
  readonly #send: Transport;
  #session: string | undefined;
  #serviceContent: ServiceContent | undefined;
  #loggedIn = false;
  #relogin: Promise<void> | undefined;
  /** Successful logins so far: a call remembers it when sent, to tell whether a re-login came after. */
  #logins = 0;

  constructor(config: VcenterConfig, http: HttpTransport, wrapper?: (inner: Transport) => Transport) {
    this.#config = config;
    this.#http = http;
    const send = retryIdempotentReads(http.send);
    this.#send = wrapper ? wrapper(send) : send;
  }

  /** The service content read at connect time. */
  get serviceContent(): ServiceContent {
    if (!this.#serviceContent) throw new SnapkeeperError('VCENTER_NOT_CONNECTED', 'not connected to vCenter');
    return this.#serviceContent;
  }

  get roundTrips(): number {
    return this.#http.roundTrips;
  }

  /** @internal Called by connect(): RetrieveServiceContent and Login. */
  async open(signal?: AbortSignal): Promise<void> {
    const host = hostOf(this.#config.url);
    let sc: XmlObject | undefined;
    try {
      sc = asObject(await this.#callOnce('RetrieveServiceContent', SERVICE_INSTANCE, '', { signal }));
    } catch (err) {
      if (err instanceof TransportError) {
        const cause = err.cause as NodeJS.ErrnoException | undefined;
        const why = cause?.code ?? errorMessage(err);
        const hint = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(why)
          ? ' (set vcenter.thumbprint to pin a self-signed certificate, or vcenter.insecure for a lab)'
          : '';
        throw new VcenterUnreachableError(`cannot reach vCenter ${host}: ${why}${hint}`, { cause: err });
      }
      // Something answered, but not a vSphere SDK: most likely a wrong URL.
      if (err instanceof SnapkeeperError && err.code === 'VCENTER_BAD_RESPONSE') {
        throw new VcenterUnreachableError(
          `${host} does not answer as a vCenter SDK endpoint (${err.message})`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
    const about = asObject(sc?.about);
    const ref = (k: string) => moRef(sc?.[k]) ?? { type: '', value: '' };
    this.#serviceContent = {
      rootFolder: ref('rootFolder'),
      propertyCollector: ref('propertyCollector'),
      viewManager: ref('viewManager'),
      sessionManager: ref('sessionManager'),
      apiVersion: text(about?.apiVersion) || INITIAL_API_VERSION,
      apiType: text(about?.apiType) ?? '',
    };
    await this.#login(signal);
  }

  async #login(signal?: AbortSignal): Promise<void> {
    const password = this.#config.password.reveal();
    try {
      await this.#callOnce(
        'Login',
        this.serviceContent.sessionManager,
        `${el('userName', this.#config.user)}${el('password', password)}`,
        { signal },
      );
    } catch (err) {
      if (isFault(err)) {
        // A server could echo what it was sent; the password must never reach a message or a log.
        const reason = password === '' ? err.message : err.message.split(password).join('***');
        throw new AuthenticationError(
          'VCENTER_LOGIN_FAILED',
          `vCenter ${hostOf(this.#config.url)} refused the login of user ${this.#config.user}: ${reason}`,
          { details: { faultType: err.faultType } },
        );
      }
      throw err;
    }
    this.#loggedIn = true;
    this.#logins++;
  }

  /**
   * Calls one vim25 method and returns its `returnval` node (undefined for void methods). `body` is the
   * parameter XML after `_this`, already escaped (use `el`, `moRefXml`, `xmlEscape` from xml.ts). A SOAP fault
   * throws VsphereFault; an expired session is renewed once, transparently, and the call repeated.
   */
  async call(
    method: string,
    thisRef: MoRef,
    body = '',
    options: CallOptions = {},
  ): Promise<XmlNode | XmlNode[] | undefined> {
    // The session this call goes out with: a NotAuthenticated answer about an older one needs no new login.
    const sentWith = this.#logins;
    try {
      return await this.#callOnce(method, thisRef, body, options);
    } catch (err) {
      if (!isFault(err, 'NotAuthenticated') || !this.#loggedIn || NO_RELOGIN.has(method)) throw err;
      if (this.#logins === sentWith) {
        // Concurrent calls that all hit the expired session share one new login. It runs without any
        // caller's signal (one caller giving up must not fail the others), bounded by the request timeout.
        this.#relogin ??= this.#login().finally(() => {
          this.#relogin = undefined;
        });
        await abortable(this.#relogin, options.signal);
      }
      return await this.#callOnce(method, thisRef, body, options);
    }
  }

  async #callOnce(
    method: string,
    thisRef: MoRef,
    body: string,
    options: CallOptions,
  ): Promise<XmlNode | XmlNode[] | undefined> {
    const version = this.#serviceContent?.apiVersion ?? INITIAL_API_VERSION;
    const res = await this.#send({
      method,
      action: `urn:vim25/${version}`,
      body: envelope(method, thisRef, body),
      ...(this.#session === undefined ? {} : { session: this.#session }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    if (res.session !== undefined) this.#session = res.session;
    let parsed: XmlObject | undefined;
    try {
      parsed = soapBody(parseXml(res.body));
    } catch (err) {
      throw new SnapkeeperError(
        'VCENTER_BAD_RESPONSE',
        `${method}: unreadable answer (HTTP ${res.status}): ${errorMessage(err)}`,
        {
          cause: err,
        },
      );
    }
    const fault = asObject(parsed?.Fault);
    if (fault) throw faultFromSoap(fault, method);
    if (res.status !== 200 || !parsed) {
      throw new SnapkeeperError('VCENTER_BAD_RESPONSE', `${method}: unexpected answer HTTP ${res.status}`);
    }
    const response = asObject(parsed[`${method}Response`]);
    if (PROPERTY_READS.has(method)) assertAuthenticatedRead(response?.returnval, method);
    return response?.returnval;
  }

  /**
   * Starts a `_Task` method and waits for its end; returns TaskInfo.result. A task error throws VsphereFault;
   * no end within vcenter.timeoutSeconds throws VSPHERE_TASK_TIMEOUT (the task may still finish in vCenter).
   */
  async runTask(
    method: string,
    thisRef: MoRef,
    body = '',
    options: OperationOptions = {},
  ): Promise<XmlNode | XmlNode[] | undefined> {
    const task = moRef(await this.call(method, thisRef, body, options));
    if (!task) throw new SnapkeeperError('VCENTER_BAD_RESPONSE', `${method} returned no task`);
    return this.waitForTask(task, { ...options, method });
  }

  /** Polls a task's info with backoff until it succeeds or fails, honouring the timeout and `signal`. */
  async waitForTask(
    task: MoRef,
    options: OperationOptions & { method?: string } = {},
  ): Promise<XmlNode | XmlNode[] | undefined> {
    const deadline = Date.now() + this.#config.timeoutSeconds * 1000;
    let delay = 100;
    for (;;) {
      const props = await retrieveOne(this, task, ['info.state', 'info.error', 'info.result'], options);
      const state = text(props.get('info.state'));
      if (state === 'success') return props.get('info.result');
      if (state === 'error') throw faultFromLocalized(props.get('info.error'), options.method);
      if (Date.now() + delay > deadline) {
        throw new SnapkeeperError(
          'VSPHERE_TASK_TIMEOUT',
          `${options.method ?? 'task'} ${task.value} did not finish within ${this.#config.timeoutSeconds} s (it may still complete in vCenter)`,
          { details: { task: task.value } },
        );
      }
      await abortableDelay(delay, options.signal);
      delay = Math.min(delay * 2, 2000);
    }
  }

  inventory(options: OperationOptions = {}): Promise<Inventory> {
    return fetchInventory(this, options);
  }

  async vmState(
    vmId: string,
    options: OperationOptions = {},
  ): Promise<{ powerState: PowerState; snapshots: VmSnapshotRef[] }> {
    const vm: MoRef = { type: 'VirtualMachine', value: vmId };
    const props = await retrieveOne(this, vm, ['runtime.powerState', 'snapshot'], options);
    if (!props.has('runtime.powerState')) {
      // vCenter (and the simulator) answer an unknown object with a ManagedObjectNotFound fault, which
      // retrieveOne lets through. A VM that answers without a power state (the property in missingSet, or
      // the object gone between two calls) is reported with the same fault, so callers have one case.
      throw new VsphereFault(
        'ManagedObjectNotFound',
        `vSphere fault ManagedObjectNotFound: VirtualMachine:${vmId}`,
        `VirtualMachine:${vmId}`,
      );
    }
    const snapshot = asObject(props.get('snapshot'));
    return {
      powerState: (text(props.get('runtime.powerState')) ?? 'poweredOff') as PowerState,
      snapshots: flattenSnapshots(snapshot?.rootSnapshotList),
    };
  }

  async createVmSnapshot(vmId: string, options: CreateVmSnapshotOptions): Promise<string> {
    const body =
      el('name', options.name) +
      (options.description === undefined ? '' : el('description', options.description)) +
      el('memory', options.memory) +
      el('quiesce', options.quiesce);
    const result = moRef(
      await this.runTask('CreateSnapshot_Task', { type: 'VirtualMachine', value: vmId }, body, options),
    );
    if (!result)
      throw new SnapkeeperError('VCENTER_BAD_RESPONSE', 'CreateSnapshot_Task returned no snapshot');
    return result.value;
  }

  async removeVmSnapshot(snapshotId: string, options: OperationOptions = {}): Promise<void> {
    await this.runTask(
      'RemoveSnapshot_Task',
      { type: 'VirtualMachineSnapshot', value: snapshotId },
      `${el('removeChildren', false)}${el('consolidate', true)}`,
      options,
    );
  }

  async suspendVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    await this.runTask('SuspendVM_Task', { type: 'VirtualMachine', value: vmId }, '', options);
  }

  async powerOnVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    await this.runTask('PowerOnVM_Task', { type: 'VirtualMachine', value: vmId }, '', options);
  }

  async powerOffVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    await this.runTask('PowerOffVM_Task', { type: 'VirtualMachine', value: vmId }, '', options);
  }

  // The VM and datastore operations restore, mount and attach need: vm-ops.ts holds their SOAP, with this
  // session as the caller.

  createVm(spec: CreateVmSpec, options: OperationOptions = {}): Promise<string> {
    return vmOps.createVm(this, spec, options);
  }

  registerVm(spec: CreateVmSpec, options: OperationOptions = {}): Promise<string> {
    return vmOps.registerVm(this, spec, options);
  }

  vmDevices(vmId: string, options: OperationOptions = {}): Promise<VmDevices> {
    return vmOps.vmDevices(this, vmId, options);
  }

  reconfigureDisks(vmId: string, changes: DiskChanges, options: OperationOptions = {}): Promise<number[]> {
    return vmOps.reconfigureDisks(this, vmId, changes, options);
  }

  detachDiskFiles(vmId: string, files: string[], options: OperationOptions = {}): Promise<number> {
    return vmOps.detachDiskFiles(this, vmId, files, options);
  }

  unregisterVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return vmOps.unregisterVm(this, vmId, options);
  }

  destroyVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return vmOps.destroyVm(this, vmId, options);
  }

  createDatastore(
    hostId: string,
    name: string,
    path: string,
    options: OperationOptions = {},
  ): Promise<string> {
    return vmOps.createDatastore(this, hostId, name, path, options);
  }

  removeDatastore(hostId: string, datastoreId: string, options: OperationOptions = {}): Promise<void> {
    return vmOps.removeDatastore(this, hostId, datastoreId, options);
  }

  /** The key of this session (SessionManager.currentSession.key), e.g. to terminate it from another one. */
  async sessionKey(options: CallOptions = {}): Promise<string> {
    const props = await retrieveOne(this, this.serviceContent.sessionManager, ['currentSession'], options);
    return text(asObject(props.get('currentSession'))?.key) ?? '';
  }

  async logout(): Promise<void> {
    if (!this.#loggedIn) return;
    this.#loggedIn = false;
    try {
      await this.#callOnce('Logout', this.serviceContent.sessionManager, '', {});
    } catch {
      // The session may already be gone (expired, terminated, vCenter restarted); nothing left to end.
    } finally {
      this.#http.close();
    }
  }
}

/** Waits for `promise`, or rejects as soon as `signal` aborts (the promise itself goes on). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
