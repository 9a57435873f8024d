import { randomBytes } from 'node:crypto';
import { errorMessage, SnapkeeperError } from '../errors.js';
import { initRepository, LocalBackend, S3Backend } from '../repository/index.js';
import { writeFileDurable } from '../util/fs.js';
import { type LabPaths, labFiles } from './lab-dir.js';

/**
 * The lab's repositories (issue 8): `lab`, a local repository in DIR/repository, always; `lab-s3`, a bucket on a
 * moto server the lab starts, with `lab up --s3`. Both are unlocked by one random passphrase in
 * DIR/repository.passphrase (0600), named in DIR/snapkeeper.yaml by file, never written there; the S3 keys
 * (moto checks none, but the client signs every request) are in DIR/s3.credentials (0600).
 */

export const LAB_REPOSITORY = 'lab';
export const LAB_S3_REPOSITORY = 'lab-s3';
export const LAB_S3_BUCKET = 'snapkeeper-lab';

/** A repository of the lab as lab.json records it. */
export interface LabRepository {
  name: string;
  type: 'local' | 's3';
  /** local: its directory. */
  path?: string;
  /** s3: the endpoint and bucket. */
  endpoint?: string;
  bucket?: string;
}

/** The moto server behind `lab-s3`: what `lab down` stops and `lab status` checks. */
export interface LabS3 {
  pid: number;
  port: number;
  endpoint: string;
  bucket: string;
}

/** The lab's repositories: `lab`, and `lab-s3` when there is a moto server. */
export function labRepositories(paths: LabPaths, s3: LabS3 | undefined): LabRepository[] {
  return [
    { name: LAB_REPOSITORY, type: 'local', path: paths.repository },
    ...(s3
      ? [{ name: LAB_S3_REPOSITORY, type: 's3' as const, endpoint: s3.endpoint, bucket: s3.bucket }]
      : []),
  ];
}

/** Their entries in DIR/snapkeeper.yaml (paths relative to it, as the rest of the lab's configuration). */
export function labRepositoryConfig(repositories: LabRepository[], region: string): object[] {
  return repositories.map((r) =>
    r.type === 'local'
      ? {
          name: r.name,
          type: 'local',
          path: labFiles.repository,
          passphraseFile: labFiles.repositoryPassphrase,
        }
      : {
          name: r.name,
          type: 's3',
          endpoint: r.endpoint,
          region,
          bucket: r.bucket,
          pathStyle: true,
          credentialsFile: labFiles.s3Credentials,
          passphraseFile: labFiles.repositoryPassphrase,
        },
  );
}

/** A fresh random passphrase for the lab's repositories in a file readable by its owner only; returns it. */
export async function writeLabPassphrase(paths: LabPaths): Promise<string> {
  const passphrase = randomBytes(24).toString('base64url');
  await writeFileDurable(paths.repositoryPassphrase, `${passphrase}\n`, 0o600);
  return passphrase;
}

/** The moto server's keys as a shared-credentials file (the configuration's `credentialsFile`). */
export async function writeLabS3Credentials(
  paths: LabPaths,
  keys: { accessKeyId: string; secretAccessKey: string },
): Promise<void> {
  await writeFileDurable(
    paths.s3Credentials,
    `[default]\naws_access_key_id = ${keys.accessKeyId}\naws_secret_access_key = ${keys.secretAccessKey}\n`,
    0o600,
  );
}

/**
 * Initialises each of the lab's repositories, as `snapkeeper repo init --repository NAME` does (the same
 * repository layer call, in this process: a CLI run per lab would cost seconds in every test that starts a
 * lab): DIR/repository, the objects of the bucket. LAB_REPOSITORY_INIT_FAILED with the reason when one fails.
 */
export async function initLabRepositories(
  repositories: LabRepository[],
  passphrase: string,
  s3Keys: { accessKeyId: string; secretAccessKey: string },
  region: string,
): Promise<void> {
  for (const r of repositories) {
    const s3 =
      r.type === 's3'
        ? new S3Backend({
            endpoint: r.endpoint!,
            region,
            bucket: r.bucket!,
            pathStyle: true,
            credentials: s3Keys,
          })
        : undefined;
    const backend = s3 ?? new LocalBackend({ path: r.path! });
    try {
      await (await initRepository(backend, passphrase, { workers: 1 })).close();
    } catch (err) {
      throw new SnapkeeperError(
        'LAB_REPOSITORY_INIT_FAILED',
        `initialising repository ${r.name} (${backend.description}) failed: ${errorMessage(err)}`,
        { cause: err },
      );
    } finally {
      s3?.destroy();
    }
  }
}
