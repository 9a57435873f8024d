/**
 * Runs jobs with at most `global` running at once and at most `perKey` per key (the ESXi host of a VM):
 * vCenter and each host have their own limits on concurrent snapshot and power operations.
 * Jobs start in the order given whenever both limits allow; a failing job does not stop the others.
 */
export async function runLimited<T, R>(
  items: readonly T[],
  limits: { global: number; perKey: number },
  keyOf: (item: T) => string,
  job: (item: T) => Promise<R>,
): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  const pending = items.map((_, i) => i);
  const runningPerKey = new Map<string, number>();
  let running = 0;

  return new Promise((resolve) => {
    let finished = 0;
    if (items.length === 0) {
      resolve(results);
      return;
    }
    const pump = () => {
      for (let p = 0; p < pending.length && running < limits.global; ) {
        const index = pending[p]!;
        const key = keyOf(items[index]!);
        const used = runningPerKey.get(key) ?? 0;
        if (used >= limits.perKey) {
          p++;
          continue;
        }
        pending.splice(p, 1);
        running++;
        runningPerKey.set(key, used + 1);
        job(items[index]!).then(
          (value) => settle(index, key, { status: 'fulfilled', value }),
          (reason: unknown) => settle(index, key, { status: 'rejected', reason }),
        );
      }
    };
    const settle = (index: number, key: string, result: PromiseSettledResult<R>) => {
      results[index] = result;
      running--;
      runningPerKey.set(key, (runningPerKey.get(key) ?? 1) - 1);
      finished++;
      if (finished === items.length) resolve(results);
      else pump();
    };
    pump();
  });
}
