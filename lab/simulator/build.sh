#!/usr/bin/env bash
# Builds the lab simulator (lab/simulator/*.go) with Debian's Go and Debian's govmomi source only
# (GOPATH=/usr/share/gocode, GO111MODULE=off: nothing is downloaded or vendored), into
# .cache/snapsim/snapsim-<hash of the sources>, reusing an existing binary. Prints the binary's absolute path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out_dir="$repo/.cache/snapsim"
hash="$(cat "$here"/*.go "$here/build.sh" | sha256sum | cut -c1-16)"
bin="$out_dir/snapsim-$hash"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "build.sh: go is not installed (apt-get install golang-go)" >&2; exit 1; }
  [[ -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ]] ||
    { echo "build.sh: govmomi source missing (apt-get install golang-github-vmware-govmomi-dev)" >&2; exit 1; }
  mkdir -p "$out_dir" "$repo/.cache/go-build"
  tmp="$(mktemp "$out_dir/.snapsim-build.XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  (
    cd "$here"
    GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE="$repo/.cache/go-build" \
      go build -o "$tmp" . >&2
  )
  chmod 0755 "$tmp"
  mv -f "$tmp" "$bin"
  # Binaries of older sources are never used again (a running one keeps its inode).
  find "$out_dir" -maxdepth 1 -name 'snapsim-*' ! -name "snapsim-$hash" -type f -delete
fi
echo "$bin"
