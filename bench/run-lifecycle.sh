#!/usr/bin/env bash
# The container lifecycle, as an unprivileged user, in one run (issue 9):
#  1. the cycle `run -d -p PORT:80 ... httpd` + `stop -t 0` + `rm`, interleaved in hyperfine
#     rounds (lib.sh), for rbox with each network backend and Podman with its default
#     (slirp4netns and rootlessport in Podman 4.3);
#  2. the resident memory (VmRSS, VmHWM, Pss) of what holds a detached container with a
#     published port that has served a request: rbox's monitor (its forwarder is a thread of
#     it) and its network helper, against Podman's conmon, rootlessport and slirp4netns.
# Targets: the cycle under a tenth of Podman's; the monitor with its forwarder under 5 MB.
#
#   sudo bench/run-lifecycle.sh    # as root: runs as $BENCH_USER (needs /dev/net/tun 0666)
#   bench/run-lifecycle.sh         # as an ordinary user
#
# Env: RBOX (binary, default target/release/rbox), RBOX_BASE (optional: that binary's cycles
# too, with each network backend, for an A/B of a change), BENCH_USER (default rboxsub, when run as
# root), ROUNDS and RUNS (hyperfine rounds, runs per round and command: default 3 and 5),
# PORT_BASE (default 38600; it uses 6 from there), BENCH_SHOW=1.
# Writes bench/results/lifecycle-<date>.md and prints the tables.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-5}"
PORT_BASE="${PORT_BASE:-38600}"
need_tools run-lifecycle hyperfine podman slirp4netns pasta jq setpriv curl
need_rbox run-lifecycle
bench_user run-lifecycle
W="$(mktemp -d /tmp/rbox-bench-lc.XXXXXX)"
chmod 755 "$W"
X="$(mktemp -d /tmp/rbl.XXXXXX)"
export BENCH_HOME="$W/home"
R="$W/user"
rbox() { run "$W/rbox" --root "$R/rbox-store" --runroot "$R/rbox-run" "$@"; }
P=(podman --root "$R/podman-store" --runroot "$R/podman-run")
pod() { run env XDG_RUNTIME_DIR="$X" CONTAINERS_CONF="$R/containers.conf" "${P[@]}" "$@"; }
cleanup() {
    set +e
    for n in cyc-pasta cyc-slirp cyc-bpasta cyc-bslirp mem-pasta mem-slirp; do rbox rm -f "$n" >/dev/null 2>&1; done
    for n in cyc-podman mem-podman; do pod rm -f -t 0 "$n" >/dev/null 2>&1; done
    if [ -s "$X/libpod/tmp/pause.pid" ]; then
        kill "$(cat "$X/libpod/tmp/pause.pid")" 2>/dev/null
    fi
    rm -rf "$W" "$X" 2>/dev/null || run rm -rf "$W" "$X" 2>/dev/null
    rm -rf "$W" "$X" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install -m 755 "$RBOX" "$W/rbox"
[ -z "${RBOX_BASE:-}" ] || install -m 755 "$RBOX_BASE" "$W/rbox-base"
mkdir -p "$W/home" "$R"
chmod 700 "$X"
busybox_rootfs "$R/rootfs"
mkdir -p "$R/rootfs/www" && echo up >"$R/rootfs/www/index.html"
tar -C "$R/rootfs" -cf "$R/bb.tar" .
cat >"$R/containers.conf" <<CONF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
[ "$(id -u)" = 0 ] && chown -R "$user:" "$W/home" "$R" "$X"
echo "preparing: rbox import, podman import" >&2
rbox import "$R/bb.tar" bench-bb >/dev/null
pod import -q "$R/bb.tar" localhost/bench-bb >/dev/null

# 1. The cycle, each engine on its own port.
if [ "$(id -u)" = 0 ]; then
    pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME"
else
    pre="env HOME=$BENCH_HOME"
fi
rb="$W/rbox --root $R/rbox-store --runroot $R/rbox-run"
pd="env XDG_RUNTIME_DIR=$X CONTAINERS_CONF=$R/containers.conf ${P[*]}"
cycle() { # NAME ENGINE-CMD NETWORK-FLAG PORT IMAGE
    echo "$pre sh -c '$2 run -d --name $1 $3 -p $4:80 $5 httpd -f -p 80 -h /www >/dev/null && $2 stop -t 0 $1 >/dev/null && $2 rm $1 >/dev/null'"
}
json="$W/cycle.json"
cmds=(-n "rbox pasta" "$(cycle cyc-pasta "$rb" --network=pasta "$PORT_BASE" bench-bb)"
    -n "rbox slirp4netns" "$(cycle cyc-slirp "$rb" --network=slirp4netns $((PORT_BASE + 1)) bench-bb)")
if [ -n "${RBOX_BASE:-}" ]; then
    # the same store: each container is created, stopped and removed by one binary
    rbb="$W/rbox-base --root $R/rbox-store --runroot $R/rbox-run"
    cmds+=(-n "rbox-base pasta" "$(cycle cyc-bpasta "$rbb" --network=pasta $((PORT_BASE + 4)) bench-bb)"
        -n "rbox-base slirp4netns" "$(cycle cyc-bslirp "$rbb" --network=slirp4netns $((PORT_BASE + 5)) bench-bb)")
fi
cmds+=(-n "podman (slirp4netns, rootlessport)" "$(cycle cyc-podman "$pd" --network=slirp4netns $((PORT_BASE + 2)) localhost/bench-bb)")
interleaved "$json" "$ROUNDS" "$RUNS" 1 -- "${cmds[@]}"

# 2. Memory, with a port that has served.
served() { # PORT: one request answered, at most 20 s
    local deadline=$((SECONDS + 20))
    until curl -fsS "http://127.0.0.1:$1/" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "run-lifecycle: port $1 never answered" >&2; return 1; }
        sleep 0.05
    done
}
: >"$W/mem"
uid="$(id -u "$user")"
for net in pasta slirp4netns; do
    port=$((PORT_BASE + 3))
    name="mem-${net%4netns}"
    rbox run -d --name "$name" --network="$net" -p "$port:80" bench-bb httpd -f -p 80 -h /www >/dev/null
    served "$port"
    sleep 1
    pid="$(rbox inspect -f '{{.State.Pid}}' "$name")"
    mon="$(ppid_of "$pid")"
    procs=("monitor:$mon")
    for c in $(cat "/proc/$mon/task/"*/children 2>/dev/null); do
        [ "$c" = "$pid" ] || procs+=("$(tr '\0' '\n' <"/proc/$c/cmdline" | head -1 | xargs basename):$c")
    done
    echo "rbox $net|$(mem_sum "${procs[@]}")" >>"$W/mem"
    rbox rm -f "$name" >/dev/null
done
port=$((PORT_BASE + 3))
pod run -d --name mem-podman -p "$port:80" localhost/bench-bb httpd -f -p 80 -h /www >/dev/null
served "$port"
sleep 1
pid="$(pod inspect -f '{{.State.Pid}}' mem-podman)"
procs=("conmon:$(ppid_of "$pid")")
# this container's slirp4netns only (its command line names the container's netns path)
ns="$(pod inspect -f '{{.NetworkSettings.SandboxKey}}' mem-podman)"
for f in /proc/[0-9]*; do
    q="${f#/proc/}"
    [ "$(stat -c %u "$f" 2>/dev/null)" = "$uid" ] || continue
    a="$(tr '\0' '\n' <"$f/cmdline" 2>/dev/null | head -1)" || continue
    case "${a##*/}" in
    rootlessport*) procs+=("${a##*/}:$q") ;;
    slirp4netns) grep -qF "$ns" "$f/cmdline" 2>/dev/null && procs+=("slirp4netns:$q") ;;
    esac
done
echo "podman (slirp4netns)|$(mem_sum "${procs[@]}")" >>"$W/mem"
pod rm -f -t 0 mem-podman >/dev/null

out="$repo/bench/results/lifecycle-$(date -u +%Y%m%d-%H%M).md"
{
    echo "# Container lifecycle: run -d -p + stop + rm, and what holds a container"
    echo
    echo "$(machine_line), load average $(cut -d' ' -f1-3 /proc/loadavg); rbox $("$W/rbox" --version | awk '{print $2}') ($RBOX$([ -n "${RBOX_BASE:-}" ] && echo ", base $RBOX_BASE")); $(podman --version)"
    echo
    echo "## run -d -p PORT:80 httpd + stop -t 0 + rm (hyperfine, $ROUNDS rounds x $RUNS runs, interleaved)"
    echo
    table "$json" "podman (slirp4netns, rootlessport)"
    echo
    echo "## Resident memory with a published port that has served, kB (VmRSS/VmHWM/Pss)"
    echo
    echo "| container | RSS total | Pss total | processes |"
    echo "|---|---:|---:|---|"
    while IFS='|' read -r what rss pss rest; do
        echo "| $what | $rss | $pss | $rest |"
    done <"$W/mem"
} >"$out"
cat "$out"
echo "written: $out" >&2
