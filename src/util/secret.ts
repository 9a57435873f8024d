import { inspect } from 'node:util';

/**
 * Holds a secret (vCenter password, passphrase, token) so that it cannot leak by accident: string
 * conversion, JSON and util.inspect all print a mask. Only `reveal()` gives the value, at the point of use.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return '***';
  }

  toJSON(): string {
    return '***';
  }

  [inspect.custom](): string {
    return 'Secret(***)';
  }
}
