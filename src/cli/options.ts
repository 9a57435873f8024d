import { type Command, InvalidArgumentError } from 'commander';
import { UsageError } from '../errors.js';

/** The parser of an option that may be given several times, each value kept (`--delay A=1 --delay B=2`). */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

/**
 * Commander keeps only the last value of an option given twice (`delete --backup A --backup B` would delete
 * B alone): every option taking one value is refused when repeated, naming it. Variadic options and those
 * parsed with `collect` take several values on purpose.
 */
export function refuseRepeatedOptions(cmd: Command): void {
  for (const option of cmd.options) {
    if (!(option.required || option.optional) || option.variadic || option.parseArg === collect) continue;
    const parse = option.parseArg;
    let given = false;
    option.argParser((value: string, previous: unknown) => {
      if (given)
        throw new InvalidArgumentError(`${option.long} was given more than once; it takes one value`);
      given = true;
      return parse === undefined ? value : parse(value, previous);
    });
  }
  for (const sub of cmd.commands) refuseRepeatedOptions(sub);
}

/**
 * Refuses options the chosen form of a command would ignore (exit 3, naming each): `given` maps each flag to
 * whether it was given, `allowed` lists the flags that form uses.
 */
export function refuseIgnoredOptions(
  form: string,
  given: Record<string, boolean>,
  allowed: readonly string[],
): void {
  const ignored = Object.entries(given)
    .filter(([flag, isGiven]) => isGiven && !allowed.includes(flag))
    .map(([flag]) => flag);
  if (ignored.length > 0) {
    throw new UsageError(
      'USAGE',
      `${form} does not use ${ignored.join(', ')}: remove ${ignored.length === 1 ? 'it' : 'them'}`,
      { details: { ignoredOptions: ignored } },
    );
  }
}
