#!/usr/bin/env bash
# The FUSE overlay's cost per file counted rather than timed (counts do not move with the
# machine's load): FUSE requests and server syscalls per file while a container creates
# FILES empty files (busybox touch), lists them (ls -l) and deletes them (rm), from
# `strace -c -f` attached to the container's FUSE server (each read(2) of /dev/fuse is one
# request). Give several rbox binaries to compare them.
#
#   sudo bench/run-fuse-count.sh target/release/rbox /tmp/rbox-other     # as root
#
# Env: BENCH_USER (default rboxsub), FILES (default 2000). Prints one table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/lib.sh"
FILES="${FILES:-2000}"
user="${BENCH_USER:-rboxsub}"
[ "$(id -u)" = 0 ] || { echo "run-fuse-count: run as root (strace attaches to the server)" >&2; exit 1; }
command -v strace >/dev/null || { echo "run-fuse-count: strace is not installed" >&2; exit 1; }
[ $# -gt 0 ] || { echo "usage: run-fuse-count.sh RBOX..." >&2; exit 1; }
W="$(mktemp -d /var/tmp/rbox-bench-count.XXXXXX)"
chmod 755 "$W"
export BENCH_HOME="$W/home"
mkdir -p "$W/home"
busybox_rootfs "$W/rootfs"
tar -C "$W/rootfs" -cf "$W/image.tar" .
rm -rf "$W/rootfs"
chown -R "$user:" "$W"
cleanup() {
    as_user "$user" "$W/rbox0" --root "$W/store" --runroot "$W/run" rm -f count >/dev/null 2>&1 || true
    as_user "$user" "$W/rbox0" --root "$W/store" --runroot "$W/run" unshare rm -rf "$W/store" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
i=0
for b in "$@"; do
    install -m 755 "$b" "$W/rbox$i"
    i=$((i + 1))
done
as_user "$user" "$W/rbox0" --root "$W/store" --runroot "$W/run" import "$W/image.tar" count >/dev/null

echo "| rbox | phase | requests/file | server syscalls/file |"
echo "|---|---|---:|---:|"
i=0
for b in "$@"; do
    RB=("$W/rbox$i" --root "$W/store" --runroot "$W/run")
    as_user "$user" "${RB[@]}" --storage-driver=fuse-overlay run -d --name count --network=none count sleep 1000 >/dev/null
    init="$(as_user "$user" "${RB[@]}" inspect -f '{{.State.Pid}}' count)"
    pid=""
    for _ in $(seq 100); do
        # the server runs outside the container's pid namespace, in its mount namespace
        # (see storage/src/mount/fuse/mod.rs): the rbox-fuse process sharing the init's
        for p in $(pgrep -x rbox-fuse || true); do
            [ "$(readlink "/proc/$p/ns/mnt")" = "$(readlink "/proc/$init/ns/mnt")" ] && pid="$p"
        done
        [ -n "$pid" ] && break
        sleep 0.1
    done
    for phase in create ls delete; do
        case $phase in
            create) c="mkdir -p /d && cd /d && seq 1 $FILES | xargs touch" ;;
            ls) c="cd /d && ls -l >/dev/null" ;;
            delete) c="cd /d && seq 1 $FILES | xargs rm" ;;
        esac
        strace -f -c -o "$W/strace.$phase" -p "$pid" 2>/dev/null &
        sp=$!
        # counting starts once strace is attached (the server's TracerPid set)
        for _ in $(seq 50); do grep -q 'TracerPid:.*[1-9]' "/proc/$pid/status" && break; sleep 0.1; done
        as_user "$user" "${RB[@]}" exec count sh -c "$c"
        kill -INT "$sp"
        wait "$sp" 2>/dev/null || true
        awk -v b="$b" -v ph="$phase" -v n="$FILES" '$NF == "read" {r = $4} $NF == "total" {t = $4}
            END {printf "| %s | %s | %.2f | %.2f |\n", b, ph, r / n, t / n}' "$W/strace.$phase"
    done
    as_user "$user" "${RB[@]}" rm -f count >/dev/null
    i=$((i + 1))
done
