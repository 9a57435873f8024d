import { createWriteStream } from 'node:fs';

/** One structured log line: a JSON object with `time`, `level` and `msg`, and fields that are never secret. */
export type LogFields = Record<string, unknown>;

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

/**
 * JSON lines to stderr, or appended to `file`. Callers pass only what may be shown: request lines carry the
 * route pattern and the path without its query, never headers, cookies or bodies.
 */
export function jsonLogger(options: { file?: string; write?: (line: string) => void } = {}): Logger {
  // A stream, not a synchronous append per line: under load the log must not stall the event loop.
  const stream =
    options.file === undefined ? process.stderr : createWriteStream(options.file, { flags: 'a' });
  const write = options.write ?? ((line: string) => void stream.write(line));
  const emit = (level: string, msg: string, fields: LogFields = {}) =>
    write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  return {
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
  };
}
