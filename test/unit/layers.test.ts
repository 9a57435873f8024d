import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * The layering of src/ (README "Layout"): each folder is a layer, dependencies point one way, and a layer is
 * reached from another only through its public surface (its index.ts). Layers without code of their own
 * (model: types only; util: leaf helpers; config: the schema and loader) are reached file by file.
 * biome's noImportCycles catches cycles inside a layer; this test catches the wrong direction and the
 * back doors between layers.
 */

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const src = join(repo, 'src');

/** Which layers each layer may import. `base` is the top-level files (errors.ts, version.ts). */
const ALLOWED: Record<string, readonly string[]> = {
  base: [],
  model: ['base'],
  util: ['base', 'model'],
  config: ['base', 'model', 'util'],
  rules: ['base', 'model', 'config'],
  vsphere: ['base', 'model', 'util', 'config'],
  arrays: ['base', 'model', 'util', 'config'],
  catalog: ['base', 'model', 'util', 'config'],
  repository: ['base', 'model', 'util', 'config'],
  // The job queue seam (issue 10): in-process and PostgreSQL queues, and the worker loop.
  jobs: ['base', 'model', 'util', 'config'],
  engine: ['base', 'model', 'util', 'config', 'rules', 'vsphere', 'arrays', 'catalog', 'repository', 'jobs'],
  // `lab up` makes the lab's catalog: the only command besides `init` that creates one.
  // ... and initialises the lab's repositories (as `repo init` does).
  lab: ['base', 'model', 'util', 'config', 'vsphere', 'arrays', 'rules', 'catalog', 'repository'],
  // The daemon: an entry point beside the CLI, on the engine (nothing but the CLI imports it).
  server: ['base', 'model', 'util', 'config', 'rules', 'catalog', 'engine'],
  cli: [
    'base',
    'model',
    'util',
    'config',
    'rules',
    'vsphere',
    'arrays',
    'catalog',
    'engine',
    'lab',
    'server',
  ],
};

/** Layers reached file by file: no behaviour behind them that an index would have to hide. */
const OPEN_LAYERS = new Set(['base', 'model', 'util', 'config']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

function layerOf(file: string): string {
  const parts = relative(src, file).split(sep);
  return parts.length === 1 ? 'base' : parts[0]!;
}

/** Relative specifiers of static imports and re-exports, and of dynamic import() calls. */
function importsOf(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/\bfrom\s+'(\.[^']+)'/g)) found.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*'(\.[^']+)'\s*\)/g)) found.push(m[1]!);
  for (const m of text.matchAll(/^import\s+'(\.[^']+)'/gm)) found.push(m[1]!);
  return found;
}

interface Edge {
  from: string;
  to: string;
  fromLayer: string;
  toLayer: string;
}

function edges(): Edge[] {
  return sourceFiles(src).flatMap((file) =>
    importsOf(readFileSync(file, 'utf8')).map((spec) => {
      const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
      return {
        from: relative(src, file),
        to: relative(src, target),
        fromLayer: layerOf(file),
        toLayer: layerOf(target),
      };
    }),
  );
}

describe('layers', () => {
  const all = edges();

  it('finds the imports it checks (the parser is not blind)', () => {
    assert.ok(all.length > 100, `only ${all.length} imports found`);
    assert.ok(all.some((e) => e.fromLayer === 'engine' && e.toLayer === 'catalog'));
    assert.deepEqual(importsOf("export { a } from './x.js';\nimport b from '../y.js';"), [
      './x.js',
      '../y.js',
    ]);
  });

  it('every file is in a known layer', () => {
    const unknown = [...new Set(all.map((e) => e.fromLayer))].filter((l) => !(l in ALLOWED));
    assert.deepEqual(unknown, []);
  });

  it('dependencies point one way', () => {
    const wrong = all
      .filter((e) => e.fromLayer !== e.toLayer && !ALLOWED[e.fromLayer]!.includes(e.toLayer))
      .map((e) => `${e.from} -> ${e.to}`);
    assert.deepEqual(wrong, []);
  });

  it('the allowed directions have no cycle', () => {
    const visiting = new Set<string>();
    const done = new Set<string>();
    const visit = (layer: string, path: string[]): void => {
      assert.ok(!visiting.has(layer), `layer cycle: ${[...path, layer].join(' -> ')}`);
      if (done.has(layer)) return;
      visiting.add(layer);
      for (const next of ALLOWED[layer]!) visit(next, [...path, layer]);
      visiting.delete(layer);
      done.add(layer);
    };
    for (const layer of Object.keys(ALLOWED)) visit(layer, []);
  });

  it('a layer is reached from another only through its index', () => {
    const backDoors = all
      .filter(
        (e) =>
          e.fromLayer !== e.toLayer && !OPEN_LAYERS.has(e.toLayer) && e.to !== join(e.toLayer, 'index.ts'),
      )
      .map((e) => `${e.from} -> ${e.to}`);
    assert.deepEqual(backDoors, []);
  });

  it('inside the engine: steps, then the journal registry, then the runner, then the entry points', () => {
    const inEngine = all.filter((e) => e.fromLayer === 'engine' && e.toLayer === 'engine');
    assert.ok(
      inEngine.some((e) => e.from === join('engine', 'operation.ts')),
      'the runner imports something',
    );
    const wrong = inEngine
      .filter((e) => engineRank(e.to) > engineRank(e.from))
      .map((e) => `${e.from} (${engineRank(e.from)}) -> ${e.to} (${engineRank(e.to)})`);
    assert.deepEqual(wrong, []);
  });
});

/**
 * The layers inside src/engine (its README): a file imports only files of its own rank or below. Any file not
 * named is an entry point; naming a new file below the entry points is part of adding it.
 */
const ENGINE_RANKS: [number, string[]][] = [
  [
    0,
    [
      'context.ts',
      'export-files.ts',
      'ids.ts',
      'rule-errors.ts',
      'repository-access.ts',
      'views.ts',
      'job-queue.ts',
    ],
  ],
  [1, ['journal/actions.ts', 'journal/write.ts']],
  [
    2,
    [
      'restore-common.ts',
      'restore-source.ts',
      'steps/mounts.ts',
      'steps/backup-record.ts',
      'steps/backup-start.ts',
      'steps/backup-vms.ts',
      'steps/quiesce-fallback.ts',
      'steps/backup-snapshot.ts',
      'steps/hooks.ts',
      'steps/backup-hooks.ts',
      'steps/offload-files.ts',
      'steps/offload-record.ts',
      'offload-disk.ts',
      'release.ts',
      'placement.ts',
      'plan.ts',
      'snapshot-presence.ts',
    ],
  ],
  [3, ['journal/report.ts', 'journal/backup-recovery.ts', 'journal/undo.ts', 'journal/recovery.ts']],
  [4, ['operation.ts']],
];
const ENTRY_POINT_RANK = 5;

function engineRank(file: string): number {
  const name = relative('engine', file).split(sep).join('/');
  if (name === 'index.ts') return ENTRY_POINT_RANK + 1;
  return ENGINE_RANKS.find(([, files]) => files.includes(name))?.[0] ?? ENTRY_POINT_RANK;
}

/**
 * web/ (the UI) is a layer of its own above the server: it speaks only the daemon's HTTP API. Its sources import
 * nothing outside web/src but React, and nothing in src/ imports it.
 */
describe('web layer', () => {
  const web = join(repo, 'web', 'src');
  const files = (function walk(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      const path = join(dir, e.name);
      if (e.isDirectory()) return walk(path);
      return /\.(ts|tsx)$/.test(e.name) ? [path] : [];
    });
  })(web);

  it('web/src imports only its own files and React', () => {
    assert.ok(files.length > 5, `only ${files.length} files under web/src`);
    const wrong: string[] = [];
    let seen = 0;
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/\b(?:from|import)\s*\(?\s*'([^']+)'/g)) {
        const spec = m[1]!;
        seen++;
        if (spec.startsWith('.')) {
          if (relative(web, resolve(dirname(file), spec)).startsWith('..'))
            wrong.push(`${relative(web, file)}: ${spec}`);
        } else if (!/^react(-dom)?(\/|$)/.test(spec)) wrong.push(`${relative(web, file)}: ${spec}`);
      }
    }
    assert.ok(seen > 30, `only ${seen} imports found under web/src (the parser is not blind)`);
    assert.deepEqual(wrong, []);
  });

  it('nothing in src/ imports web/', () => {
    const into = sourceFiles(src).filter((f) =>
      importsOf(readFileSync(f, 'utf8')).some((spec) =>
        resolve(dirname(f), spec).startsWith(join(repo, 'web')),
      ),
    );
    assert.deepEqual(into, []);
  });
});
