#!/usr/bin/env bash
# Start-up of `rbox run --rm --network=none BUSYBOX true` against bwrap (and a second rbox
# build, RBOX_BASE), as run-startup.sh measures it, but with every measured process at
# SCHED_FIFO (`chrt -f 10`, inherited by each run's processes): on a machine that other
# builds keep busy, the unprioritised table is mostly their noise (see
# results/startup-20261125-1327.md). Only the measured commands run at that priority: the
# preparation (import) does not (`podman import` spins forever at RT priority on 2 cores,
# which is why Podman and crun are left to run-startup.sh). rbox and rbox-base share one
# store, so that both start from the same file system state (a store whose directories saw
# many recent deletions makes every new file dearer: ext4 without a journal skips recently
# deleted inodes when it looks for a free one).
#
#   cargo build --release && sudo RBOX_BASE=target/rbox-base bench/run-startup-fifo.sh
#
# Root only (chrt -f needs it; the runs drop to $BENCH_USER, default rboxsub). Env: RBOX
# (default target/release/rbox), RBOX_BASE, ROUNDS (default 8), RUNS (per round and
# command, default 20), BENCH_FS (journaled: the default, the store on a fresh journaled ext4,
# see lib.sh's journaled_fs; host: /tmp as it is). Writes bench/results/startup-<date>.md
# and prints the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
ROUNDS="${ROUNDS:-8}"
RUNS="${RUNS:-20}"
user="${BENCH_USER:-rboxsub}"
[ "$(id -u)" = 0 ] || { echo "run-startup-fifo: run as root (chrt -f)" >&2; exit 1; }
need_tools run-startup-fifo hyperfine bwrap jq setpriv chrt
need_rbox run-startup-fifo
if [ -n "${RBOX_BASE:-}" ] && [ ! -x "$RBOX_BASE" ]; then
    echo "run-startup-fifo: RBOX_BASE \`$RBOX_BASE\` is not an executable" >&2
    exit 1
fi
id "$user" >/dev/null 2>&1 || { echo "run-startup-fifo: no user $user (see .ci/run)" >&2; exit 1; }

W="$(mktemp -d /tmp/rbox-bench-fifo.XXXXXX)"
chmod 755 "$W"
journaled_fs "$W"
cleanup() {
    # rbox's pause process for this store would keep journaled_fs's file system mounted
    stop_pause "$W/user/run/pause.pid"
    journaled_fs_off
    rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
install -m 755 "$RBOX" "$W/rbox"
[ -n "${RBOX_BASE:-}" ] && install -m 755 "$RBOX_BASE" "$W/rbox-base"
export BENCH_HOME="$W/home"
mkdir -p "$W/home" "$W/user"
busybox_rootfs "$W/rootfs"
tar -C "$W/rootfs" -cf "$W/busybox.tar" .
chown -R "$user:" "$W/home" "$W/user" "$W/rootfs" "$W/busybox.tar"
S="--root $W/user/store --runroot $W/user/run"
# shellcheck disable=SC2086
as_user "$user" "$W/rbox" $S import "$W/busybox.tar" bench-busybox >/dev/null

pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME"
base=()
[ -n "${RBOX_BASE:-}" ] && base=(-n rbox-base "$pre $W/rbox-base $S run --rm --network=none bench-busybox /bin/true")
json="$W/startup.json"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
chrt -f 10 bash -c '. "$0/lib.sh"; interleaved "$@"' "$here" "$json" "$ROUNDS" "$RUNS" 3 -- \
    "${base[@]}" \
    -n rbox "$pre $W/rbox $S run --rm --network=none bench-busybox /bin/true" \
    -n bwrap "$pre bwrap --unshare-all --die-with-parent --ro-bind $W/rootfs / --proc /proc --dev /dev --tmpfs /tmp /bin/true"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$here/results"
out="$here/results/startup-fifo-$(date -u +%Y%m%d-%H%M).md"
{
    echo "# Start-up at SCHED_FIFO: \`true\` in a busybox rootfs, as user $user"
    echo
    echo "$(machine_line); $("$W/rbox" --version 2>/dev/null | head -1), $(bwrap --version); store on $(store_fs "$W")"
    [ -n "${RBOX_BASE:-}" ] && echo "rbox-base: \`$RBOX_BASE\`; rbox: \`$RBOX\` (one store for both)."
    echo "bench/run-startup-fifo.sh: $ROUNDS interleaved rounds x $RUNS runs per command (hyperfine -N,"
    echo "3 warm-up runs per round), all under \`chrt -f 10\`; load average $load_before before, $load_after after."
    echo
    table "$json" bwrap
} | tee "$out"
echo >&2
echo "written: $out" >&2
