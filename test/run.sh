#!/usr/bin/env bash
# The whole test suite: type-check and build, build the simulator, lint, then every test file under
# dist/test (unit tests, simulator tests, btrfs tests as root). Extra arguments go to node --test.
set -euo pipefail
cd "$(dirname "$0")/.."
# A clean build: a test file deleted from test/ must not keep running from an old dist/.
rm -rf dist
npm run --silent build
bash lab/simulator/build.sh >/dev/null
npx biome check src test bench web/src
# Only *.test.js files: given a directory, node --test would also run every module under it (helpers, child
# processes of tests) as if it were a test file.
if [ $# -eq 0 ]; then
  mapfile -t files < <(find dist/test -name '*.test.js' | sort)
  set -- "${files[@]}"
fi
exec node --test --test-concurrency=2 --test-timeout=600000 "$@"
