#!/usr/bin/env bash
# The main job on the embedded lab, start to end: install and build, start a lab (vCenter simulator, a
# file-system array and a local repository), show the inventory, back up every VM with one array snapshot, show
# the backup, damage a VM's disk, restore it and a VM with RDM disks from the backup as new VMs, offload the
# backup to the lab's repository (deduplicated, compressed, encrypted), delete its array snapshot, restore the
# VM from the repository as a new VM, and check that every restored disk holds the bytes of backup time. The lab
# stays up for exploring; the last lines say how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DIR="${SNAPKEEPER_LAB_DIR:-/tmp/snapkeeper-lab}"
sk() { node bin/snapkeeper.js "$@"; }
# Runs a command for which exit 1 (completed with warnings) is expected; anything higher stops the demo.
allow_warnings() {
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -gt 1 ]; then echo "$* failed (exit $rc)" >&2; exit "$rc"; fi
}
step() { printf '\n== %s\n' "$*"; }

if [ -f "$DIR/lab.json" ]; then sk lab down --dir "$DIR"; fi
up=(lab up --spec examples/lab.json --dir "$DIR")
# As root the array sits on a loop-mounted btrfs image: atomic group snapshots and instant (cloned) restores.
if [ "$(id -u)" = 0 ]; then up+=(--btrfs-image 4G); fi
step "snapkeeper ${up[*]}"
sk "${up[@]}"
C="$DIR/snapkeeper.yaml"

step "inventory (RDM and independent disks marked !)"
sk --config "$C" inventory

step "backup --task lab-all (exit 1 expected: db01 has RDM disks, so SNAPSHOT_EXCL_MEM becomes ASIS)"
set +e
sk --config "$C" backup --task lab-all
rc=$?
set -e
if [ "$rc" -gt 1 ]; then echo "backup failed (exit $rc)" >&2; exit "$rc"; fi
ID="$(sk --config "$C" --json inquire --limit 1 | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].id))')"

step "inquire"
sk --config "$C" inquire

step "damage web01's first disk after the backup; the live VM no longer matches"
printf 'overwritten after the backup' | dd of="$DIR/array/pool/ds-a/web01/web01_0-flat.vmdk" bs=1 seek=4096 conv=notrunc status=none
sk lab verify --dir "$DIR" --vm web01 || true

step "restore --backup $ID --vm web01 --as web01-restored"
sk --config "$C" restore --backup "$ID" --vm web01 --as web01-restored

step "restore --backup $ID --vm db01 --as db01-restored (exit 1 expected: RDM disks are never restored)"
set +e
sk --config "$C" restore --backup "$ID" --vm db01 --as db01-restored
rc=$?
set -e
if [ "$rc" -gt 1 ]; then echo "restore failed (exit $rc)" >&2; exit "$rc"; fi

step "the restored disks hold the bytes of backup time"
sk lab verify --dir "$DIR" --vm web01 --as web01-restored
sk lab verify --dir "$DIR" --vm db01 --as db01-restored

step "offload --backup $ID --repository lab (a copy off the array: $DIR/repository)"
allow_warnings sk --config "$C" offload --backup "$ID" --repository lab

step "repo backups --repository lab (what the repository holds, whichever catalog made it)"
sk --config "$C" repo backups --repository lab

step "delete --backup $ID: the backup's array snapshot is gone, its copy in the repository stays"
sk --config "$C" delete --backup "$ID"

step "restore --backup $ID --vm web01 --as web01-from-repo --source repository --repository lab"
sk --config "$C" restore --backup "$ID" --vm web01 --as web01-from-repo --source repository --repository lab

step "the disks restored from the repository hold the bytes of backup time"
sk lab verify --dir "$DIR" --vm web01 --as web01-from-repo

step "inventory after the restores"
sk --config "$C" inventory --vm '*-re*'

printf '\nThe lab is still running. Explore it with: node bin/snapkeeper.js --config %s <command>\n' "$C"
printf 'Stop it with:                             node bin/snapkeeper.js lab down --dir %s\n' "$DIR"
