import type { Readable } from 'node:stream';

/**
 * The repository layer's public contract (issue 8). Two seams:
 * - `RepositoryBackend`: where named, write-once objects live (a local directory, S3, memory for tests). It
 *   knows nothing of chunks, keys or manifests; one conformance suite (test/repository/backend-conformance.ts)
 *   runs against every implementation.
 * - `Repository`: the format on top of a backend (docs/repository-format.md): keyed-hash chunk ids, zstd,
 *   AEAD, packs, indexes, one manifest per offloaded backup. The engine's offload and restore-from-repository
 *   use only this and `ManifestBody`; they never see a pack or a key.
 */

export interface BackendObject {
  key: string;
  size: number;
}

export interface BackendCapabilities {
  /** `save` refuses an existing key atomically (S3 `If-None-Match: *`, O_EXCL + rename on a directory). */
  conditionalWrite: boolean;
  /** `save` can set a retain-until date that nobody can shorten (S3 Object Lock, compliance mode). */
  objectLock: boolean;
}

export interface BackendSaveOptions {
  signal?: AbortSignal;
  /** Write-once protection until then (only where `capabilities.objectLock`). */
  retainUntil?: Date;
  /**
   * The SHA-256 of the data (hex), when the caller knows it (a content name): S3 signs the request with it and
   * the server checks the bytes it received against it, without the backend hashing them again.
   */
  sha256?: string;
}

/**
 * An object's bytes: one buffer, or pieces laid end to end (a pack is its writer's sealed batches: a backend
 * that can write pieces as they are spares a copy of every byte offloaded).
 */
export type ObjectData = Uint8Array | readonly Uint8Array[];

/** The pieces of `data` (one buffer is one piece). */
export function piecesOf(data: ObjectData): readonly Uint8Array[] {
  return data instanceof Uint8Array ? [data] : data;
}

/**
 * Named objects (keys like `packs/ab/abcdef...`, `index/...`, `manifests/...`, `locks/...`, `config`, `keys/...`).
 * Every method honours `signal`: it rejects with an AbortError soon after abort, leaving nothing half written
 * under the key.
 */
export interface RepositoryBackend {
  /** What it is, for messages: `local /srv/repo`, `s3 bucket/prefix at http://...` (never a credential). */
  readonly description: string;
  readonly capabilities: BackendCapabilities;
  /**
   * Stores a new object atomically: readers see all of it or nothing. ConflictError `OBJECT_EXISTS` when the
   * key exists (nothing is ever overwritten). A full disk or a refused write is a StorageError naming the key.
   */
  save(key: string, data: ObjectData, options?: BackendSaveOptions): Promise<void>;
  /**
   * All of an object, or `length` bytes from `offset`. NotFoundError `OBJECT_NOT_FOUND`. The buffer is the
   * caller's from then on (the repository may transfer its memory to a worker thread): never a view of memory
   * the backend keeps.
   */
  load(
    key: string,
    options?: {
      offset?: number;
      length?: number;
      signal?: AbortSignal;
      /**
       * A ranged load may be read into this memory (at least `length` bytes) and a view of it returned (the
       * local backend does: a restore reuses its buffers instead of making one per load); a backend may
       * ignore it and return a buffer of its own.
       */
      into?: Uint8Array;
    },
  ): Promise<Buffer>;
  /** Size, or undefined when absent. */
  stat(key: string, options?: { signal?: AbortSignal }): Promise<BackendObject | undefined>;
  /** Every object whose key starts with `prefix`, in no particular order. */
  list(prefix: string, options?: { signal?: AbortSignal }): AsyncIterable<BackendObject>;
  /** Removes an object; an absent one is fine. Refused (StorageError) while an Object Lock retention holds. */
  remove(key: string, options?: { signal?: AbortSignal }): Promise<void>;
}

/** One file of a VM as the repository stores it: content as a list of chunks (fixed, aligned). */
export interface StoredFile {
  /** Path relative to the VM's home on the datastore, e.g. `web01.vmx`, `web01-flat.vmdk`. */
  path: string;
  size: number;
  /** Ids of the chunks in order; an all-zero chunk is the id `zero` and stored nowhere. */
  chunks: string[];
  /** Chunk size used for this file (the last chunk may be shorter). */
  chunkSize: number;
}

/**
 * What the engine gives the writer for one file: its size and a reader of byte ranges (the array snapshot's
 * `readFile`). With `previous` (the same file in the last offloaded backup of this disk) and `changedRanges`
 * (what may differ since that backup's snapshot), only chunks touching a changed range are read; the others
 * reuse the previous chunk ids. Without them every byte is read, and unchanged chunks still deduplicate.
 */
export interface FileSource {
  path: string;
  size: number;
  /**
   * The bytes `offset..offset+length`. The stream may also carry `readAt(target, position)` (positional reads
   * into the caller's memory, as the fs array's does: writer.ts `PositionalSource`): the writer then reads
   * straight into its batch buffers and only destroys the stream.
   */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Readable>;
  previous?: StoredFile;
  changedRanges?: { offset: number; length: number }[];
}

export interface WriteProgress {
  /** Bytes of the files considered (including those skipped as unchanged). */
  bytesDone: number;
  bytesTotal: number;
  /** Bytes actually read from the source. */
  bytesRead: number;
  /** Bytes of new, compressed, encrypted data written to the backend. */
  bytesAdded: number;
}

/** The backup as the repository describes it: enough to list and restore it with no catalog. */
export interface ManifestBody {
  /** The catalog backup id. */
  backupId: string;
  /** Catalog id that made the backup (12 hex). */
  catalogId: string;
  task: string;
  startedAt: string;
  snapshotAt?: string;
  /** The catalog's BackupRecord as it was at offload time (VMs, disks, modes, consistency, exclusions). */
  record: unknown;
  /** The task configuration captured at backup time, when known. */
  taskConfig?: unknown;
  /** Per VM id: every file stored for it. */
  vms: { vmId: string; name: string; files: StoredFile[] }[];
}

export interface ManifestSummary {
  /** Repository's manifest id (content-named). */
  id: string;
  backupId: string;
  catalogId: string;
  task: string;
  startedAt: string;
  offloadedAt: string;
  vms: { vmId: string; name: string; bytes: number }[];
}

export interface Manifest extends ManifestSummary {
  body: ManifestBody;
}

export interface CheckIssue {
  /** e.g. `PACK_TRUNCATED`, `CHUNK_CORRUPT`, `INDEX_CORRUPT`, `MANIFEST_CORRUPT`, `CHUNK_MISSING`. */
  code: string;
  /** The object (pack, index, manifest key) and, where it applies, the chunk id. */
  object: string;
  message: string;
}

export interface CheckReport {
  ok: boolean;
  manifests: number;
  packs: number;
  chunks: number;
  bytesRead: number;
  issues: CheckIssue[];
}

export interface PruneReport {
  packsDeleted: number;
  packsRewritten: number;
  bytesFreed: number;
  /** Packs unreferenced but younger than the safety delay: kept for a later prune. */
  packsPending: number;
}

/** One offload in progress: files are added (several at once is fine), then `commit` writes the manifest. */
export interface RepositoryWriter {
  /** Stores a file's chunks (only what the repository lacks) and returns its entry for the manifest. */
  addFile(source: FileSource): Promise<StoredFile>;
  /**
   * Flushes open packs, writes their index, then the manifest (last: a manifest is only ever written once all
   * it names is stored). Returns the manifest summary.
   */
  commit(body: ManifestBody): Promise<ManifestSummary>;
  /**
   * Ends the writer without a manifest: the open pack is saved and indexed, like `commit` up to the manifest.
   * For a part of an offload (one disk job of several, docs/workers.md): another writer, opened afterwards,
   * finds the chunks and commits the manifest naming them; should none ever name them, prune collects them
   * after its safety delay.
   */
  flush(): Promise<void>;
  /** Gives up: flushes nothing more; what was stored stays for the next offload to reuse (prune collects it). */
  abort(): Promise<void>;
}

/** A repository opened with its passphrase. Every read verifies what it reads (AEAD and chunk id). */
export interface Repository {
  /** Repository id (from its config object). */
  readonly id: string;
  readonly backend: RepositoryBackend;
  writer(options?: {
    signal?: AbortSignal;
    onProgress?: (p: WriteProgress) => void;
  }): Promise<RepositoryWriter>;
  listManifests(options?: { signal?: AbortSignal }): Promise<ManifestSummary[]>;
  /** By manifest id, or by backup id when exactly one manifest has it. NotFoundError `REPOSITORY_BACKUP_NOT_FOUND`. */
  loadManifest(idOrBackupId: string): Promise<Manifest>;
  /**
   * Writes a stored file's bytes to `sink`, each chunk at its offset, OUT OF FILE ORDER and several writes at
   * once (never overlapping): the chunks come in the order of the packs that hold them, as soon as a worker
   * has verified them (docs/repository-format.md, "Restore"). The sink must take positional writes in any
   * order. Zero chunks are not written (the file is sparse there; the last byte is written when the file ends
   * in zeros). Every chunk is verified before any of its bytes are written: a corrupt or missing chunk rejects
   * with RepositoryError `CHUNK_CORRUPT` / `CHUNK_MISSING` naming the chunk and its pack, once every write
   * already started has settled (none is left running). `onProgress` counts zero chunks at once, then the
   * bytes written.
   */
  restoreFile(
    file: StoredFile,
    sink: { write(offset: number, data: Buffer): Promise<void> },
    options?: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void },
  ): Promise<void>;
  /** Removes a manifest (its data stays until prune). */
  forget(manifestId: string): Promise<void>;
  check(options?: { readData?: boolean; signal?: AbortSignal }): Promise<CheckReport>;
  /** Takes the exclusive lock; deletes what no manifest references and is older than `safetyDelayMs`. */
  prune(options?: { safetyDelayMs?: number; now?: Date; signal?: AbortSignal }): Promise<PruneReport>;
  /** Re-wraps the master key under a new passphrase; no data is rewritten. */
  changePassphrase(newPassphrase: string): Promise<void>;
  close(): Promise<void>;
}
