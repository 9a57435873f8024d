import { join } from 'node:path';
import { stringify } from 'yaml';
import { Catalog, PostgresCatalog } from '../catalog/index.js';
import { parseConfig } from '../config/load.js';
import { writeFileDurable } from '../util/fs.js';
import { Secret } from '../util/secret.js';
import { labFiles } from './lab-dir.js';
import { LAB_USER } from './vcenter.js';

/** The lab's PostgreSQL catalog (`lab up --postgres`): its URL (no password) and the password's file. */
export interface LabCatalogServer {
  url: string;
  password: string;
}

/**
 * Writes DIR/snapkeeper.yaml for the lab's simulator at `url` (pinned to `thumbprint` over HTTPS), its array,
 * its catalog (DIR/catalog.db, or with `postgres` the lab's PostgreSQL server: `catalog: { url,
 * passwordFile }`) and its `repositories` (repositories.ts), with a task `lab-all` selecting every VM, and
 * creates that catalog.
 */
export async function writeLabConfig(
  dir: string,
  url: string,
  thumbprint: string | undefined,
  repositories: object[] = [],
  postgres?: LabCatalogServer,
): Promise<void> {
  const configFile = join(dir, labFiles.config);
  const catalog =
    postgres === undefined
      ? { path: labFiles.catalog }
      : { url: postgres.url, passwordFile: labFiles.postgresPassword };
  const yaml = labConfigYaml(url, thumbprint, repositories, catalog);
  parseConfig(yaml, configFile, {}); // a lab whose configuration does not load is a bug here, not later
  await writeFileDurable(configFile, yaml);
  // The lab's catalog is made with it: no other command creates one (a mistyped path must not).
  if (postgres === undefined) {
    await Catalog.create(join(dir, labFiles.catalog)).close();
  } else {
    const created = await PostgresCatalog.create({
      url: postgres.url,
      path: postgres.url,
      password: new Secret(postgres.password),
    });
    await created.close();
  }
}

function labConfigYaml(
  url: string,
  thumbprint: string | undefined,
  repositories: object[],
  catalog: object,
): string {
  // Paths are relative to the file (the loader resolves them so), which keeps the directory self-contained.
  const config = {
    vcenter: {
      url,
      user: LAB_USER,
      passwordFile: labFiles.password,
      ...(thumbprint !== undefined && { thumbprint }),
    },
    arrays: [{ name: 'lab', type: 'fs', path: labFiles.array }],
    catalog,
    defaults: { mode: 'SNAPSHOT_EXCL_MEM' },
    tasks: [{ name: 'lab-all', select: { vms: ['*'] } }],
    ...(repositories.length > 0 && { repositories }),
  };
  return `# Written by snapkeeper lab up for the lab in this directory; removed by snapkeeper lab down.\n${stringify(config)}`;
}
