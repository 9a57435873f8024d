import { useMemo, useState } from 'react';
import { api } from '../api';
import { DiskKindBadge, ErrorBox, Loading, useAsync } from '../components/common';
import { bytes } from '../format';
import { href } from '../router';
import type { Inventory as InventoryData, InventoryVm } from '../types';

type GroupBy = 'host' | 'folder';

interface Node {
  name: string;
  children: Map<string, Node>;
  vms: InventoryVm[];
}

function node(name: string): Node {
  return { name, children: new Map(), vms: [] };
}

/** Datacenter -> cluster -> host -> VM, or datacenter -> folder path -> VM. */
function buildTree(inv: InventoryData, vms: InventoryVm[], by: GroupBy, filtered: boolean): Node {
  const root = node('');
  const at = (path: string[]): Node => {
    let n = root;
    for (const p of path) {
      let c = n.children.get(p);
      if (!c) {
        c = node(p);
        n.children.set(p, c);
      }
      n = c;
    }
    return n;
  };
  // Without a filter, hosts and folders that hold no VM show too (the daemon lists them).
  if (!filtered && by === 'host')
    for (const h of inv.hosts ?? [])
      at([h.datacenter, ...(h.cluster ? [`cluster ${h.cluster}`] : []), `host ${h.name}`]);
  if (!filtered && by === 'folder')
    for (const f of inv.folders ?? []) {
      const parts = f.path.split('/').filter(Boolean);
      if (parts.length) at([f.datacenter, ...parts.map((p) => `folder ${p}`)]);
    }
  for (const vm of vms) {
    const path = [vm.datacenter || '(no datacenter)'];
    if (by === 'host') {
      if (vm.cluster) path.push(`cluster ${vm.cluster}`);
      path.push(`host ${vm.host || '(unknown host)'}`);
    } else {
      const folders = (vm.folder ?? '').split('/').filter(Boolean);
      if (folders.length === 0) path.push('(top-level VM folder)');
      else path.push(...folders.map((f) => `folder ${f}`));
    }
    at(path).vms.push(vm);
  }
  return root;
}

function countVms(n: Node): number {
  let c = n.vms.length;
  for (const ch of n.children.values()) c += countVms(ch);
  return c;
}

function hasSpecial(vm: InventoryVm): boolean {
  return vm.disks.some((d) => d.kind !== 'flat');
}

function VmNode({ vm }: { vm: InventoryVm }) {
  const rdm = vm.disks.filter((d) => d.kind.startsWith('rdm')).length;
  const indep = vm.disks.filter((d) => d.kind === 'independent').length;
  return (
    <li className="vm-node" data-vm={vm.name}>
      <details open={hasSpecial(vm)}>
        <summary>
          <span className="vm-name">{vm.name}</span>{' '}
          <span className={`power power-${vm.powerState}`}>{vm.powerState}</span>
          {rdm > 0 && (
            <span className="badge kind-rdm-physical">
              <span aria-hidden="true">! </span>
              {rdm} RDM {rdm === 1 ? 'disk' : 'disks'}
            </span>
          )}
          {indep > 0 && (
            <span className="badge kind-independent">
              <span aria-hidden="true">! </span>
              {indep} independent
            </span>
          )}
          {vm.tools && vm.tools !== 'running' && <span className="badge warn-code">Tools {vm.tools}</span>}
        </summary>
        <ul className="disks" aria-label={`Disks of ${vm.name}`}>
          {vm.disks.map((d) => (
            <li key={d.label} className={`disk disk-${d.kind}`} data-disk-kind={d.kind}>
              <span className="disk-label">{d.label}</span> <DiskKindBadge kind={d.kind} />{' '}
              <span className="muted">
                {bytes(d.capacityBytes)}
                {d.lun ? ` · LUN ${d.lun}` : d.datastore ? ` · ${d.datastore}` : ''}
                {d.diskMode && d.diskMode !== 'persistent' ? ` · ${d.diskMode}` : ''}
              </span>
            </li>
          ))}
        </ul>
        <p className="vm-links">
          <a href={`${href('backups')}?vm=${encodeURIComponent(vm.name)}`}>Backups of {vm.name}</a>
          {vm.snapshots && vm.snapshots.length > 0 && (
            <span className="muted"> · {vm.snapshots.length} VM snapshot(s) present</span>
          )}
        </p>
      </details>
    </li>
  );
}

function TreeNode({ n }: { n: Node }) {
  return (
    <li>
      <details open>
        <summary>
          {n.name}{' '}
          <span className="muted">
            ({countVms(n)} {countVms(n) === 1 ? 'VM' : 'VMs'})
          </span>
        </summary>
        <ul>
          {[...n.children.values()]
            .sort((a, b) => a.name.localeCompare(b.name))
            .map((c) => (
              <TreeNode key={c.name} n={c} />
            ))}
          {n.vms
            .sort((a, b) => a.name.localeCompare(b.name))
            .map((vm) => (
              <VmNode key={vm.id} vm={vm} />
            ))}
        </ul>
      </details>
    </li>
  );
}

export function Inventory() {
  const { data, error, loading, reload } = useAsync(() => api.inventory(), []);
  const [by, setBy] = useState<GroupBy>('host');
  const [filter, setFilter] = useState('');
  const tree = useMemo(() => {
    const f = filter.trim().toLowerCase();
    const vms = (data?.vms ?? []).filter((v) => !f || v.name.toLowerCase().includes(f));
    return data ? buildTree(data, vms, by, f !== '') : node('');
  }, [data, by, filter]);

  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Inventory</h1>
        <button type="button" onClick={reload} disabled={loading}>
          Refresh
        </button>
      </div>
      <p className="legend">
        <DiskKindBadge kind="rdm-physical" /> <DiskKindBadge kind="rdm-virtual" /> raw device mappings are not
        backed up; a VM with one is backed up in ASIS (MODE_CHANGED_RDM) unless its task offloads.{' '}
        <DiskKindBadge kind="independent" /> disks are captured crash consistent.
      </p>
      <div className="toolbar">
        <label htmlFor="inv-filter">Filter VMs</label>
        <input id="inv-filter" type="search" value={filter} onChange={(e) => setFilter(e.target.value)} />
        <fieldset className="inline">
          <legend>Group by</legend>
          <label>
            <input type="radio" name="groupby" checked={by === 'host'} onChange={() => setBy('host')} /> host
          </label>
          <label>
            <input type="radio" name="groupby" checked={by === 'folder'} onChange={() => setBy('folder')} />{' '}
            folder
          </label>
        </fieldset>
      </div>
      <ErrorBox error={error} />
      {!data && loading && <Loading what="the inventory" />}
      {data && (
        <div className="inventory-layout">
          <section aria-labelledby="tree-title" className="card">
            <h2 id="tree-title">Virtual machines</h2>
            <ul className="tree" aria-label="Inventory tree">
              {[...tree.children.values()].map((c) => (
                <TreeNode key={c.name} n={c} />
              ))}
            </ul>
          </section>
          <section aria-labelledby="ds-title" className="card">
            <h2 id="ds-title">Datastores</h2>
            <table>
              <thead>
                <tr>
                  <th scope="col">Datastore</th>
                  <th scope="col">Type</th>
                  <th scope="col">Free / capacity</th>
                  <th scope="col">Array volumes</th>
                </tr>
              </thead>
              <tbody>
                {data.datastores.map((d) => (
                  <tr key={d.name}>
                    <th scope="row">{d.name}</th>
                    <td>{d.type ?? '–'}</td>
                    <td>
                      {bytes(d.freeBytes)} / {bytes(d.capacityBytes)}
                    </td>
                    <td>
                      {d.volumes && d.volumes.length > 0 ? (
                        d.volumes.join(', ')
                      ) : (
                        <span className="badge warn-code">on no array</span>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        </div>
      )}
    </>
  );
}
