import { AAD } from './crypto.js';
import { openDocument, sealDocument } from './format.js';
import type { Manifest, ManifestBody, ManifestSummary } from './types.js';

/** A manifest object: sealed `{version: 1, offloadedAt, body}` (docs/repository-format.md, "Manifests"). */
interface ManifestDocument {
  version: 1;
  offloadedAt: string;
  body: ManifestBody;
}

export function sealManifest(encKey: Buffer, body: ManifestBody, offloadedAt: string): Buffer {
  return sealDocument(encKey, { version: 1, offloadedAt, body } satisfies ManifestDocument, AAD.manifest);
}

export function summaryOf(id: string, body: ManifestBody, offloadedAt: string): ManifestSummary {
  return {
    id,
    backupId: body.backupId,
    catalogId: body.catalogId,
    task: body.task,
    startedAt: body.startedAt,
    offloadedAt,
    vms: body.vms.map((vm) => ({
      vmId: vm.vmId,
      name: vm.name,
      bytes: vm.files.reduce((n, f) => n + f.size, 0),
    })),
  };
}

/** The manifest, or undefined when it does not authenticate or is not a version 1 manifest. */
export function openManifest(encKey: Buffer, id: string, data: Buffer): Manifest | undefined {
  const doc = openDocument(encKey, data, AAD.manifest) as ManifestDocument | undefined;
  if (doc?.version !== 1 || typeof doc.offloadedAt !== 'string' || !Array.isArray(doc.body?.vms))
    return undefined;
  for (const vm of doc.body.vms) {
    if (!Array.isArray(vm?.files)) return undefined;
    for (const f of vm.files)
      if (!Array.isArray(f?.chunks) || typeof f.chunkSize !== 'number') return undefined;
  }
  return { ...summaryOf(id, doc.body, doc.offloadedAt), body: doc.body };
}
