# Shared by the bench/ scripts (sourced, not run): interleaved hyperfine rounds and the
# results table. Interleaving: every round runs every command (hyperfine, a few runs each), so
# machine noise (the other core busy, page cache, thermal) spreads over all of them alike; the
# table is computed from the times of all rounds together.

# interleaved OUT_JSON ROUNDS RUNS_PER_ROUND WARMUP -- hyperfine args (-n NAME CMD ... and
# --prepare), exactly as for one hyperfine call.
interleaved() {
    local out="$1" rounds="$2" runs="$3" warmup="$4"
    shift 5
    local tmp style=(--style basic)
    # BENCH_SHOW=1 shows each command's output (to see why one fails)
    [ -n "${BENCH_SHOW:-}" ] && style=(--show-output)
    tmp="$(mktemp -d)"
    for r in $(seq 1 "$rounds"); do
        echo "--- round $r/$rounds" >&2
        hyperfine -N "${style[@]}" --warmup "$warmup" --runs "$runs" \
            --export-json "$tmp/round-$r.json" "$@" >&2
    done
    # Merge: per command name, all the times of every round.
    jq -s '[ .[].results[] ] | group_by(.command) | map({command: .[0].command,
            times: ([ .[].times[] ])})' "$tmp"/round-*.json >"$out"
    rm -rf "$tmp"
}

# table JSON BASELINE_NAME: a markdown table (mean, median, min, stddev in ms, ratio of the
# means to the baseline).
table() {
    local json="$1" base="$2"
    jq -r --arg base "$base" '
      def mean: add / length;
      def median: sort | if length % 2 == 1 then .[length/2|floor]
                         else (.[length/2 - 1] + .[length/2]) / 2 end;
      def sd: (mean) as $m | (map((. - $m) * (. - $m)) | add / length | sqrt);
      def ms: . * 1000 * 100 | round / 100;
      (map(select(.command == $base)) | .[0].times | mean) as $b
      | "| command | runs | mean ms | median ms | min ms | stddev ms | x " + $base + " |",
        "|---|---:|---:|---:|---:|---:|---:|",
        (sort_by(.times | mean)[]
         | "| \(.command | gsub("\\|"; "\\|")) | \(.times | length) | \(.times | mean | ms) | \(.times | median | ms) | \(.times | min | ms) | \(.times | sd | ms) | \(((.times | mean) / $b * 100 | round) / 100) |")
    ' "$json"
}

# machine_line: what the numbers were measured on.
machine_line() {
    echo "$(uname -sr), $(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME"), $(date -u +%Y-%m-%dT%H:%MZ)"
}

# as_user USER CMD...: run CMD as USER with a clean environment (HOME in the work dir).
as_user() {
    local u="$1"
    shift
    setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME="${BENCH_HOME:?}" USER="$u" LOGNAME="$u" "$@"
}

# need_tools TOOL CMD...: exit, naming the script TOOL, when a command CMD is not installed.
need_tools() {
    local tool="$1" t
    shift
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "$tool: $t is not installed" >&2; exit 1; }
    done
}

# need_rbox TOOL: exit when $RBOX is not an executable (built first).
need_rbox() {
    [ -x "$RBOX" ] || { echo "$1: \`$RBOX\` missing: cargo build --release first" >&2; exit 1; }
}

# bench_user TOOL: sets `user`, whom the measured commands run as: BENCH_USER (default
# rboxsub, which must exist) as root, else the caller.
bench_user() {
    if [ "$(id -u)" = 0 ]; then
        user="${BENCH_USER:-rboxsub}"
        id "$user" >/dev/null 2>&1 || { echo "$1: no user $user (see .ci/run)" >&2; exit 1; }
    else
        user="$(id -un)"
    fi
}

# podman_conf FILE: the containers.conf the benchmarks give Podman (CONTAINERS_CONF): no
# systemd here (cgroupfs, file events), and rbox's open-files limit for its containers.
podman_conf() {
    cat >"$1" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
}

# run CMD...: CMD as `user` (bench_user): through as_user as root, else with HOME=$BENCH_HOME.
run() { if [ "$(id -u)" = 0 ]; then as_user "$user" "$@"; else env HOME="$BENCH_HOME" "$@"; fi; }

# busybox_rootfs DIR: a busybox root filesystem from the host's busybox-static.
busybox_rootfs() {
    local d="$1"
    mkdir -p "$d/bin" "$d/etc" "$d/tmp" "$d/proc" "$d/dev" "$d/sys"
    cp /bin/busybox "$d/bin/busybox"
    for a in $("$d/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$d/bin/$a"
    done
    echo "root:x:0:0:root:/root:/bin/sh" >"$d/etc/passwd"
    echo "root:x:0:" >"$d/etc/group"
}

# journaled_fs DIR: when BENCH_FS=journaled (the default as root), DIR becomes the mount
# point of a fresh ext4 with mkfs's defaults (journal included) in a sparse loop file beside
# it: what a laptop's or a cluster node's local disk has. This machine kind's own root is ext4
# without a journal, where the inode allocator skips every inode deleted in the last 60
# seconds (360 while its inode table block is dirty: ext4's recently_deleted), so each new
# file costs more the more files were removed just before: a history-dependent cost the same
# for every engine that swamps the differences between them (kernel overlay created 20,000
# files in 4.2-13.9 s there, 0.65 s on the loop file system). BENCH_FS=host keeps DIR as is.
# Sets `loop_mount` for journaled_fs_off.
journaled_fs() {
    local d="$1"
    loop_mount=""
    [ "${BENCH_FS:-journaled}" = journaled ] && [ "$(id -u)" = 0 ] || return 0
    for t in mkfs.ext4 losetup; do
        command -v "$t" >/dev/null || { echo "bench: $t is not installed (or BENCH_FS=host)" >&2; exit 1; }
    done
    truncate -s "${BENCH_FS_GB:-16}G" "$d.img"
    mkfs.ext4 -q -F "$d.img"
    mount -o loop "$d.img" "$d"
    chmod 755 "$d"
    loop_mount="$d"
}

# stop_pause PIDFILE: kills the pause process a pid file names (the first word), if any.
stop_pause() {
    [ -f "$1" ] || return 0
    kill "$(cut -d' ' -f1 "$1")" 2>/dev/null || true
}

# journaled_fs_off: unmounts and removes journaled_fs's file system, if one was made.
journaled_fs_off() {
    [ -n "${loop_mount:-}" ] || return 0
    local i
    # a pause process just killed may hold it for a moment
    for i in $(seq 20); do
        umount "$loop_mount" 2>/dev/null && break
        sleep 0.1
    done
    mountpoint -q "$loop_mount" && umount -l "$loop_mount" 2>/dev/null
    rm -f "$loop_mount.img"
}

# store_fs DIR: in words, the file system DIR's benchmarks ran on.
store_fs() {
    if [ -n "${loop_mount:-}" ]; then
        echo "a fresh journaled ext4 (loop file)"
    else
        findmnt -no FSTYPE --target "$1"
    fi
}

# fuse_bench_setup TOOL NAME: the FUSE benchmarks' set-up (run-fuse.sh, run-fuse-files.sh;
# TOOL names the script in errors). Sets `user` (BENCH_USER, default rboxsub, as root; else
# the caller), `W` (/var/tmp/rbox-bench-NAME.XXXXXX on journaled_fs, removed at exit with
# both stores and this run's pause processes), `R` ($W/user, holding containers.conf), `RB`
# and `P` (the rbox and Podman command prefixes for stores under $R) and the function `run`
# (a command as that user). Needs RBOX. The caller then makes an image tarball and gives it
# to fuse_bench_import.
fuse_bench_setup() {
    local tool="$1" name="$2"
    bench_user "$tool"
    W="$(mktemp -d "/var/tmp/rbox-bench-$name.XXXXXX")"
    chmod 755 "$W"
    journaled_fs "$W"
    trap fuse_bench_cleanup EXIT
    install -m 755 "$RBOX" "$W/rbox"
    export BENCH_HOME="$W/home"
    mkdir -p "$W/home" "$W/user/xdg"
    chmod 700 "$W/user/xdg"
    R="$W/user"
    podman_conf "$R/containers.conf"
    RB="$W/rbox --root $R/rbox-store --runroot $R/rbox-run"
    # Podman's pause process (one per user and runtime directory) keeps the mount namespace
    # of its first run, from before this run's file system was mounted (this machine's / is
    # a private mount): a runtime directory of its own
    P="env XDG_RUNTIME_DIR=$R/xdg podman --root $R/podman-store --runroot $R/podman-run --storage-driver overlay --storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs"
}

fuse_bench_cleanup() {
    # the stores hold files of subordinate ids: remove them from inside the user namespace
    run "$W/rbox" --root "$R/rbox-store" --runroot "$R/rbox-run" unshare rm -rf "$R/rbox-store" 2>/dev/null || true
    run env XDG_RUNTIME_DIR="$R/xdg" podman --root "$R/podman-store" --runroot "$R/podman-run" unshare rm -rf "$R/podman-store" 2>/dev/null || true
    # the pause processes of this run: their mount namespaces would keep journaled_fs's file
    # system mounted
    stop_pause "$R/xdg/libpod/tmp/pause.pid"
    stop_pause "$R/rbox-run/pause.pid"
    journaled_fs_off
    rm -rf "$W" 2>/dev/null || true
}

# fuse_bench_import TAR NAME: the image tarball TAR (under $R) as NAME in rbox's store and as
# localhost/NAME in Podman's, then TAR removed.
fuse_bench_import() {
    [ "$(id -u)" = 0 ] && chown -R "$user:" "$W/home" "$R"
    # shellcheck disable=SC2086
    run $RB import "$1" "$2" >/dev/null
    # shellcheck disable=SC2086
    run env CONTAINERS_CONF="$R/containers.conf" $P import "$1" "localhost/$2" >/dev/null
    rm -f "$1"
}

# mem_of PID: "VmRSS VmHWM Pss" of the process, in kB.
# The start-up count and phase scripts' set-up: each rbox build in "$@" copied to
# $W/bin/rbox-N (distinct names: strace and the tracepoints tell the builds apart by the
# command name), and user $user given a busybox image `bench-busybox` in a store under
# $W/user. Sets `names` (the copies) and `S` (the store flags); needs W, user and BENCH_HOME;
# $1 is the calling script's name for errors.
rbox_builds_with_busybox() {
    local tool="$1" b n
    shift
    mkdir -p "$W/home" "$W/user" "$W/bin"
    names=()
    for b in "$@"; do
        [ -x "$b" ] || { echo "$tool: \`$b\` is not an executable" >&2; exit 1; }
        n="rbox-$(( ${#names[@]} + 1 ))"
        install -m 755 "$b" "$W/bin/$n"
        names+=("$n")
        echo "$n: $b" >&2
    done
    busybox_rootfs "$W/rootfs"
    tar -C "$W/rootfs" -cf "$W/busybox.tar" .
    chown -R "$user:" "$W/home" "$W/user" "$W/busybox.tar"
    S="--root $W/user/store --runroot $W/user/run"
    # shellcheck disable=SC2086
    as_user "$user" "$W/bin/${names[0]}" $S import "$W/busybox.tar" bench-busybox >/dev/null
}

# workdir_with_registry NAME: a fresh work directory `W` (/tmp/rbox-bench-NAME.XXXXXX, mode
# 755) that is removed on exit, with the registry of start_registry (if one was started)
# stopped first.
workdir_with_registry() {
    W="$(mktemp -d "/tmp/rbox-bench-$1.XXXXXX")"
    chmod 755 "$W"
    reg_pid=""
    trap stop_registry_and_workdir EXIT
}

stop_registry_and_workdir() {
    if [ -n "$reg_pid" ]; then
        kill "$reg_pid" 2>/dev/null || true
        wait "$reg_pid" 2>/dev/null || true
    fi
    rm -rf "$W" 2>/dev/null || true
}

# start_registry DIR: docker-registry serving from DIR/data on a free 127.0.0.1 port, ready
# when it logs "listening on". Sets `addr` (HOST:PORT) and `reg_pid` (stopped by
# workdir_with_registry's cleanup); fd 3 stays open on its log so it never writes into a
# closed pipe.
start_registry() {
    local d="$1" port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    addr="127.0.0.1:$port"
    mkdir -p "$d"
    cat >"$d/config.yml" <<CONF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $d/data
http:
  addr: $addr
CONF
    mkfifo "$d/log"
    docker-registry serve "$d/config.yml" 2>"$d/log" &
    reg_pid=$!
    exec 3<"$d/log"
    grep -m1 -q "listening on" <&3
    cat <&3 >/dev/null &
}

mem_of() {
    local rss hwm pss
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")"
    hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$1/status")"
    pss="$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup")"
    echo "${rss:-0} ${hwm:-0} ${pss:-0}"
}

# ppid_of PID: its parent's pid.
ppid_of() { awk '/^PPid:/ {print $2}' "/proc/$1/status"; }

# mem_sum NAME:PID...: "RSS_TOTAL|PSS_TOTAL| NAME=RSS/HWM/PSS..." over the processes, in kB.
mem_sum() {
    local e rss hwm pss tot=0 totp=0 line=""
    for e in "$@"; do
        read -r rss hwm pss <<<"$(mem_of "${e#*:}")"
        tot=$((tot + rss)) totp=$((totp + pss))
        line="$line ${e%%:*}=$rss/$hwm/$pss"
    done
    echo "$tot|$totp|$line"
}
