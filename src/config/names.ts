import { z } from 'zod';

/**
 * Names used in paths and ids (arrays, tasks, repositories): no separators, no `..`, no control characters.
 * Its own module so that schema.ts and repositories.ts (which schema.ts imports) share it without a cycle.
 */
export const safeName = z
  .string()
  .min(1)
  .max(80)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
    'must be letters, digits, ".", "_" or "-", starting with a letter or digit',
  );
