import { join } from 'node:path';
import { stringify } from 'yaml';
import { Catalog } from '../catalog/index.js';
import { parseConfig } from '../config/load.js';
import { writeFileDurable } from '../util/fs.js';
import { labFiles } from './lab-dir.js';
import { LAB_USER } from './vcenter.js';

/**
 * Writes DIR/snapkeeper.yaml for the lab's simulator at `url` (pinned to `thumbprint` over HTTPS), its array,
 * its catalog and its `repositories` (repositories.ts), with a task `lab-all` selecting every VM, and creates
 * that catalog.
 */
export async function writeLabConfig(
  dir: string,
  url: string,
  thumbprint: string | undefined,
  repositories: object[] = [],
): Promise<void> {
  const configFile = join(dir, labFiles.config);
  const yaml = labConfigYaml(url, thumbprint, repositories);
  parseConfig(yaml, configFile, {}); // a lab whose configuration does not load is a bug here, not later
  await writeFileDurable(configFile, yaml);
  // The lab's catalog is made with it: no other command creates one (a mistyped path must not).
  const catalog = Catalog.create(join(dir, labFiles.catalog));
  await catalog.close();
}

function labConfigYaml(url: string, thumbprint: string | undefined, repositories: object[]): string {
  // Paths are relative to the file (the loader resolves them so), which keeps the directory self-contained.
  const config = {
    vcenter: {
      url,
      user: LAB_USER,
      passwordFile: labFiles.password,
      ...(thumbprint !== undefined && { thumbprint }),
    },
    arrays: [{ name: 'lab', type: 'fs', path: labFiles.array }],
    catalog: { path: labFiles.catalog },
    defaults: { mode: 'SNAPSHOT_EXCL_MEM' },
    tasks: [{ name: 'lab-all', select: { vms: ['*'] } }],
    ...(repositories.length > 0 && { repositories }),
  };
  return `# Written by snapkeeper lab up for the lab in this directory; removed by snapkeeper lab down.\n${stringify(config)}`;
}
