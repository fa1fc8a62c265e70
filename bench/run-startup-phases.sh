#!/usr/bin/env bash
# Where `rbox run --rm --network=none BUSYBOX true` spends its time, per phase, for one or
# more rbox builds: the median time between kernel tracepoints of each run (perf record -a
# on a few syscalls only, so that the tracing itself costs next to nothing, unlike strace
# or perf trace), at SCHED_FIFO as run-startup-fifo.sh measures, the builds interleaved in
# rounds on one store. Phases: exec of rbox -> its setns into the user namespace of the
# pause process (process start, command line, configuration) -> clone of the init (store,
# spec, files) -> the init's fsopen of the overlay (the clone) -> its fsmount (the overlay
# mount) -> pivot_root (the other mounts) -> exec of the command (masked paths, seccomp,
# capabilities) -> rbox's wait returns -> rbox exits (removal). Needs a user with a
# subordinate range (rboxsub), whose rbox joins the pause process's namespace.
#
#   sudo bench/run-startup-phases.sh target/rbox-base target/release/rbox
#
# Root only (perf -a, chrt -f). Env: ROUNDS (default 4), RUNS (per round and build, default
# 15), BENCH_USER (default rboxsub), BENCH_FS (journaled, the default, or host: see
# run-startup-fifo.sh), FIFO (1, the default, or 0: the runs at the normal priority, as
# run-startup.sh measures). Prints the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/lib.sh"

ROUNDS="${ROUNDS:-4}"
RUNS="${RUNS:-15}"
user="${BENCH_USER:-rboxsub}"
[ "$(id -u)" = 0 ] || { echo "run-startup-phases: run as root (perf -a, chrt -f)" >&2; exit 1; }
[ $# -gt 0 ] || { echo "usage: run-startup-phases.sh RBOX..." >&2; exit 1; }
need_tools run-startup-phases perf python3 setpriv chrt

W="$(mktemp -d /tmp/rbox-bench-phases.XXXXXX)"
chmod 755 "$W"
journaled_fs "$W"
cleanup() {
    stop_pause "$W/user/run/pause.pid"
    journaled_fs_off
    rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
export BENCH_HOME="$W/home"
rbox_builds_with_busybox run-startup-phases "$@"

pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME"
loop="for r in \$(seq $ROUNDS); do for b in ${names[*]}; do for i in \$(seq $RUNS); do
    $pre $W/bin/\$b $S run --rm --network=none bench-busybox /bin/true; done; done; done"
ev=()
for e in sched:sched_process_exec syscalls:sys_enter_setns syscalls:sys_enter_clone \
    syscalls:sys_enter_fsopen syscalls:sys_enter_fsmount syscalls:sys_enter_pivot_root \
    syscalls:sys_exit_wait4 syscalls:sys_enter_exit_group; do
    ev+=(-e "$e")
done
prio=(chrt -f 10)
[ "${FIFO:-1}" = 0 ] && prio=()
"${prio[@]}" perf record -q -a "${ev[@]}" -o "$W/perf.data" -- sh -c "$loop" >/dev/null 2>&1
perf script -i "$W/perf.data" -F comm,pid,time,event 2>/dev/null >"$W/events"

python3 - "$W/events" "${names[@]}" <<'EOF'
import re, statistics, sys
events = []
for line in open(sys.argv[1]):
    m = re.match(r'\s*(\S+)\s+(\d+)\s+([\d.]+):\s+(\S+):', line)
    if m:
        events.append((m[1], int(m[2]), float(m[3]), m[4].split(':')[1]))
runs, cur = [], None
for comm, pid, t, ev in events:
    if ev == 'sched_process_exec' and comm.startswith('rbox-'):
        cur = {'name': comm, 'pid': pid, 'marks': {'start': t}}
        runs.append(cur)
        continue
    if cur is None:
        continue
    if pid == cur['pid']:
        key = {'sys_enter_setns': 'setns', 'sys_enter_clone': 'clone',
               'sys_exit_wait4': 'wait', 'sys_enter_exit_group': 'end'}.get(ev)
    elif comm == 'true' and ev == 'sched_process_exec':
        key = 'exec'
    else:
        key = {'sys_enter_fsopen': 'fsopen', 'sys_enter_fsmount': 'fsmount',
               'sys_enter_pivot_root': 'pivot'}.get(ev)
    if key and key not in cur['marks']:
        cur['marks'][key] = t
order = ['start', 'setns', 'clone', 'fsopen', 'fsmount', 'pivot', 'exec', 'wait', 'end']
heads = ['exec>setns', 'setns>clone', 'clone>fsopen', 'fsopen>fsmount', 'fsmount>pivot',
         'pivot>exec', 'exec>wait', 'wait>end', 'total']
print('| build | runs | ' + ' | '.join(heads) + ' |')
print('|---|---:|' + '---:|' * len(heads))
for name in sys.argv[2:]:
    rs = [r['marks'] for r in runs if r['name'] == name and all(k in r['marks'] for k in order)]
    if not rs:
        print(f'| {name} | 0 |')
        continue
    med = lambda a, b: statistics.median((m[b] - m[a]) * 1000 for m in rs)
    cols = [med(order[i], order[i + 1]) for i in range(len(order) - 1)] + [med('start', 'end')]
    print(f'| {name} | {len(rs)} | ' + ' | '.join(f'{c:.2f}' for c in cols) + ' |')
EOF
