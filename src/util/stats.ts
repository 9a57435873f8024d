/**
 * Process-wide counters for benchmarks and diagnostics (SOAP round trips, bytes copied). Printed by the
 * CLI on stderr as one `snapkeeper-stats: {json}` line when SNAPKEEPER_STATS=1; never on stdout.
 */
export const stats = {
  soapRoundTrips: 0,
};

export function statsLine(): string {
  return `snapkeeper-stats: ${JSON.stringify({
    soapRoundTrips: stats.soapRoundTrips,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  })}`;
}

/** Parses the stats line out of a child's stderr. */
export function parseStatsLine(stderr: string): { soapRoundTrips: number; maxRssBytes: number } | undefined {
  const line = stderr.split('\n').find((l) => l.startsWith('snapkeeper-stats: '));
  return line === undefined ? undefined : JSON.parse(line.slice('snapkeeper-stats: '.length));
}
