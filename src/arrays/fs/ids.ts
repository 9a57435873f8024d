import { randomBytes } from 'node:crypto';
import { UsageError } from '../../errors.js';

/**
 * Snapshot and clone ids: `LABEL--YYYYMMDDTHHMMSS-XXXX` (UTC time, 4 random hex digits). The label is part of
 * the id so that a directory left by a crashed run (no metadata file) can still be traced to its backup.
 */

const LABEL = /^[A-Za-z0-9._-]{1,160}$/;
const ID = /^([A-Za-z0-9._-]{1,160})--(\d{8}T\d{6})-([0-9a-f]{4})$/;

/** Throws UsageError unless `label` is 1-160 letters, digits, `.`, `_` or `-` (and not `.` or `..`). */
export function validateLabel(label: string): void {
  if (typeof label !== 'string' || !LABEL.test(label) || label === '.' || label === '..') {
    throw new UsageError(
      'ARRAY_INVALID_LABEL',
      `invalid snapshot label ${JSON.stringify(label)}: use 1-160 letters, digits, ".", "_" or "-"`,
    );
  }
}

/** A fresh id for `label` at time `now`. */
export function makeId(label: string, now: Date = new Date()): string {
  validateLabel(label);
  const ts = now
    .toISOString()
    .replace(/\.\d{3}Z$/, '')
    .replace(/[-:]/g, '');
  return `${label}--${ts}-${randomBytes(2).toString('hex')}`;
}

/** The label and creation time (second precision) embedded in an id, or undefined when it is not an id. */
export function parseId(id: string): { label: string; createdAt: string } | undefined {
  const m = ID.exec(id);
  if (!m) return undefined;
  const t = m[2]!;
  const createdAt = `${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6, 8)}T${t.slice(9, 11)}:${t.slice(11, 13)}:${t.slice(13, 15)}.000Z`;
  if (Number.isNaN(Date.parse(createdAt))) return undefined;
  return { label: m[1]!, createdAt };
}

/** True when `id` has the shape of an id (and so is safe as a single path component). */
export function isId(id: string): boolean {
  return parseId(id) !== undefined;
}
