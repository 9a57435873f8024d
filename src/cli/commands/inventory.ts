import type { Command } from 'commander';
import { datastoreVolumeNames, inventoryJson } from '../../engine/index.js';
import { UsageError } from '../../errors.js';
import type { DiskKind, Inventory, Vm } from '../../model/inventory.js';
import { matchesPattern } from '../../rules/index.js';
import { type CliContext, type CommandResult, ok } from '../context.js';
import { withEngine } from '../engine.js';
import { formatBytes } from '../progress.js';
import { table } from '../table.js';
import type { Runner } from './runner.js';

const KIND_ORDER: DiskKind[] = ['flat', 'independent', 'rdm-physical', 'rdm-virtual'];

/** `2 flat, 1 rdm-physical!`: kinds a snapshot backup does not cover in full carry a `!`. */
export function diskSummary(vm: Vm): string {
  const counts = new Map<DiskKind, number>();
  for (const d of vm.disks) counts.set(d.kind, (counts.get(d.kind) ?? 0) + 1);
  const parts = KIND_ORDER.filter((k) => counts.has(k)).map(
    (k) => `${counts.get(k)} ${k}${k === 'flat' ? '' : '!'}`,
  );
  return parts.length === 0 ? 'none' : parts.join(', ');
}

function inventoryText(inv: Inventory, vms: Vm[], volumes: Map<string, string[]>): string {
  const vmRows = vms.map((vm) => [
    vm.name,
    vm.powerState,
    vm.tools ?? 'unknown',
    vm.host,
    vm.datastores.join(','),
    diskSummary(vm),
    vm.snapshots.map((s) => s.name).join(',') || '-',
  ]);
  const dsRows = inv.datastores.map((ds) => [
    ds.name,
    ds.type,
    formatBytes(ds.capacityBytes),
    formatBytes(ds.freeBytes),
    ds.extents.map((e) => e.lun).join(',') || '-',
    (volumes.get(ds.name) ?? []).join(',') || '(no array)',
    ds.url,
  ]);
  return [
    `VMs (${vms.length})`,
    table(['NAME', 'POWER', 'TOOLS', 'HOST', 'DATASTORES', 'DISKS', 'SNAPSHOTS'], vmRows),
    '',
    `Datastores (${inv.datastores.length})`,
    table(['NAME', 'TYPE', 'CAPACITY', 'FREE', 'LUNS', 'VOLUMES', 'URL'], dsRows),
    '',
    '! = not fully covered by a VM snapshot (RDM: not backed up; independent: crash consistent)',
  ].join('\n');
}

async function inventoryCommand(ctx: CliContext, opts: { vm?: string }): Promise<CommandResult> {
  return withEngine(ctx, async (engine) => {
    const inv = await (await engine.vcenter()).inventory();
    const volumes = await datastoreVolumeNames(engine, inv.datastores);
    const pattern = opts.vm;
    const vms = inv.vms
      .filter((vm) => pattern === undefined || matchesPattern(vm.name, pattern))
      .sort((a, b) => a.name.localeCompare(b.name));
    // The same rule as backup --vm: a name typed on the command line that matches nothing is a typo to show.
    if (pattern !== undefined && vms.length === 0) {
      throw new UsageError('SELECTION_UNMATCHED', `no VM matches vms ${pattern}`);
    }
    return ok(inventoryJson(inv, vms, volumes), inventoryText(inv, vms, volumes));
  });
}

/** `snapkeeper inventory [--vm GLOB]`: VMs with their disks and snapshots, and datastores. */
export function registerInventory(program: Command, run: Runner): void {
  program
    .command('inventory')
    .description('list VMs (disks, RDMs, snapshots) and datastores as vCenter reports them')
    .option('--vm <glob>', 'only VMs whose name matches this glob')
    .action(run(inventoryCommand as (ctx: CliContext, ...args: never[]) => Promise<CommandResult>));
}
