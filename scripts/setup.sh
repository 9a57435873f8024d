#!/usr/bin/env bash
# Installs what snapkeeper needs on a fresh Debian machine and builds it: Debian's Go toolchain and govmomi
# source (for the lab's vCenter simulator) and btrfs-progs (as root), the npm packages, the TypeScript build,
# the web UI (web/dist) and the simulator binary; Chromium for the browser tests; PostgreSQL's server; checks that the machine's
# Python has moto (the tests' S3 server). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ] || need+=(golang-github-vmware-govmomi-dev)
command -v mkfs.btrfs >/dev/null 2>&1 || need+=(btrfs-progs)
# filefrag (FIEMAP extent maps) for the changed ranges of the btrfs and reflink drivers
{ command -v filefrag || [ -x /usr/sbin/filefrag ] || [ -x /sbin/filefrag ]; } >/dev/null 2>&1 || need+=(e2fsprogs)
# Debian's Chromium for the web UI's browser tests (driven by playwright-core, which downloads no browser)
[ -x /usr/bin/chromium ] || need+=(chromium)
# PostgreSQL's server binaries (/usr/lib/postgresql/N/bin) for the PostgreSQL catalog, the job queue and
# `lab up --postgres`; the tests start their own clusters (the package's own cluster is not used)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
    exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# moto (the S3 server the repository tests start) comes with the machine's Python: Debian has no package of it
# and only the npm registry and Debian's packages are reachable, so it is checked, not installed.
py="${SNAPKEEPER_PYTHON:-python3}"
if ! "$py" -c 'import moto.server' >/dev/null 2>&1; then
  echo "setup: $py cannot import moto (the S3 server of the repository tests and 'lab up --s3');" \
    "install moto 5 for that Python (pip install 'moto[server]') or set SNAPKEEPER_PYTHON to one that has it" >&2
  # The lab demo needs no S3; the full suite (CI) does.
  [ "${SNAPKEEPER_REQUIRE_ALL:-}" = 1 ] && exit 3
fi
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
npm run --silent build:web >/dev/null
bash lab/simulator/build.sh >/dev/null
echo "setup: done (node $(node --version), $(go version | cut -d' ' -f3))"
