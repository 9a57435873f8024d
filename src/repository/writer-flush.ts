import type { RepositoryWriter } from './types.js';

/**
 * A part of an offload written by one writer without a manifest (issue 10: one job per disk, the manifest
 * written once by the offload's coordinator): the open pack is saved, the saves in flight finish, their index
 * is written, the writer's lock is released. Everything it stored is then in content-named packs and an
 * index, so another writer (the coordinator's, opened afterwards) finds the chunks and can commit a manifest
 * naming them; should no manifest ever name them, prune collects them after the safety delay.
 *
 * Kept in a file of its own (the writer is being optimised elsewhere): it reaches the Writer's own steps of
 * `commit` (flushPack, the saves in flight, writeIndex, finish) and refuses, naming what is missing, should a
 * writer not have them. The clean form is a `flush()` on RepositoryWriter.
 */
export async function flushWithoutManifest(writer: RepositoryWriter): Promise<void> {
  const w = writer as unknown as {
    flushPack?: () => Promise<void>;
    saving?: Set<Promise<void>>;
    failure?: unknown;
    writeIndex?: () => Promise<void>;
    finish?: () => Promise<void>;
  };
  const missing = (['flushPack', 'writeIndex', 'finish'] as const).filter((k) => typeof w[k] !== 'function');
  if (missing.length > 0 || !(w.saving instanceof Set)) {
    throw new Error(
      `this repository writer cannot be flushed without a manifest (it lacks ${[...missing, ...(w.saving instanceof Set ? [] : ['saving'])].join(', ')})`,
    );
  }
  try {
    await w.flushPack!();
    await Promise.all(w.saving);
    if (w.failure !== undefined) throw w.failure;
    await w.writeIndex!();
  } finally {
    await w.finish!();
  }
}
