/**
 * What the offload and scale-out benchmarks share: arguments, the reference image's scripts, the size of a
 * moto bucket.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { motoClient } from '../src/lab/moto.js';

export const MiB = 1024 * 1024;

/** The value after `--name` on the command line. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/**
 * The folder of make-disk-image.py and mutate-disk-image.py: `--images DIR`, else `shared/bench` beside the
 * checkout, /work/shared/bench, or ./bench-data.
 */
export function imagesDir(): string | undefined {
  // dist/bench/common.js -> the checkout is three levels up.
  const checkout = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  return (
    arg('--images') ??
    [join(checkout, '..', 'shared', 'bench'), '/work/shared/bench', join(process.cwd(), 'bench-data')].find(
      (d) => existsSync(join(d, 'make-disk-image.py')),
    )
  );
}

/** The bytes of every object in a moto bucket. */
export async function bucketBytes(endpoint: string, bucket: string): Promise<number> {
  const c = motoClient(endpoint);
  let total = 0;
  let token: string | undefined;
  do {
    const r = await c.send(
      new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }),
    );
    for (const o of r.Contents ?? []) total += o.Size ?? 0;
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  c.destroy();
  return total;
}
