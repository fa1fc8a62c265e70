#!/usr/bin/env bash
# What `rbox run --rm --network=none BUSYBOX true` does, counted rather than timed, for one
# or more rbox builds: figures that do not move with the machine's load, to compare builds
# where the timed runs (run-startup-fifo.sh, run-startup-phases.sh) cannot tell a few tens
# of microseconds from noise. Per build, the median over RUNS runs of: the system calls of
# rbox's own processes (strace -f, from the exec of rbox on: setpriv and env excluded), the
# files they open, the inodes they create on the store's file system (O_CREAT opens, mkdir,
# symlink; not those in the container's /dev, a tmpfs) and the reads of their own id maps.
# (This VM has no hardware counters, so perf cannot count instructions; its task-clock of
# a run depends on whether the previous run's background removal still runs, and is left
# out.)
#
#   sudo bench/run-startup-counts.sh target/rbox-base target/release/rbox
#
# Root only (strace of another user's processes). Env: RUNS (default 10), BENCH_USER
# (default rboxsub). Prints the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/lib.sh"

RUNS="${RUNS:-10}"
user="${BENCH_USER:-rboxsub}"
[ "$(id -u)" = 0 ] || { echo "run-startup-counts: run as root (strace)" >&2; exit 1; }
[ $# -gt 0 ] || { echo "usage: run-startup-counts.sh RBOX..." >&2; exit 1; }
need_tools run-startup-counts strace python3 setpriv

W="$(mktemp -d /tmp/rbox-bench-counts.XXXXXX)"
chmod 755 "$W"
trap 'rm -rf "$W" 2>/dev/null || true' EXIT
export BENCH_HOME="$W/home"
rbox_builds_with_busybox run-startup-counts "$@"

pre=(setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- env -i
    PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$BENCH_HOME")
echo "| build | runs | syscalls | openat | created inodes | id-map reads |"
echo "|---|---:|---:|---:|---:|---:|"
for n in "${names[@]}"; do
    # shellcheck disable=SC2086
    "${pre[@]}" "$W/bin/$n" $S run --rm --network=none bench-busybox /bin/true # warm-up
    : >"$W/counts"
    for i in $(seq "$RUNS"); do
        # shellcheck disable=SC2086
        strace -f -qq -o "$W/trace" "${pre[@]}" "$W/bin/$n" $S run --rm --network=none \
            bench-busybox /bin/true
        python3 - "$W/trace" "$W/bin/$n" >>"$W/counts" <<'EOF'
import re, sys
trace, exe = sys.argv[1:3]
lines = open(trace).read().splitlines()
# from the exec of rbox on (setpriv and env exec in the same process before it)
start = next(i for i, l in enumerate(lines) if f'execve("{exe}"' in l)
calls = [l for l in lines[start:] if re.match(r'\d+ +\w+\(', l) or '<... ' in l]
calls = [l for l in calls if '<... ' not in l]
name = lambda l: re.match(r'\d+ +(\w+)\(', l)[1]
opens = [l for l in calls if name(l) == 'openat']
created = [l for l in calls
           if ((name(l) == 'openat' and 'O_CREAT' in l)
               or name(l) in ('mkdir', 'mkdirat', 'symlink', 'symlinkat'))
           and not re.search(r'= -1 ', l) and '/mnt/dev/' not in l]
maps = [l for l in opens if re.search(r'/proc/self/[ug]id_map', l)]
print(len(calls), len(opens), len(created), len(maps))
EOF
    done
    python3 - "$n" "$W/counts" <<'EOF'
import statistics, sys
rows = [list(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print(f'| {sys.argv[1]} | {len(rows)} | ' + ' | '.join(f'{m:,g}' for m in med) + ' |')
EOF
done
