/**
 * The known name nearest to `name`, for "did you mean" hints: the shortest one it begins (most typos leave out
 * `_Task`), else the closest by edit distance; both case-insensitive.
 */
export function closestName(name: string, known: Iterable<string>): string {
  const lower = name.toLowerCase();
  const names = [...known];
  const extended = names
    .filter((candidate) => candidate.toLowerCase().startsWith(lower))
    .sort((a, b) => a.length - b.length)[0];
  if (extended !== undefined) return extended;
  let best = '';
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of names) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}
