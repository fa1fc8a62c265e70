#!/usr/bin/env bash
# External filesystem test suites against rbox's FUSE overlay, kernel overlay and Debian's
# fuse-overlayfs, each mounted over the same image layers as an unprivileged user: every
# suite runs inside a container (`rbox run` with --storage-driver=fuse-overlay and =overlay,
# and `podman run` with overlay.mount_program=/usr/bin/fuse-overlayfs, as rootless Podman
# uses it where native overlay is unavailable), in a directory of the container's root.
#
#   sudo bench/run-fssuite.sh      # as root: runs the containers as $SUITE_USER
#
# The suites come from crates.io (`cargo install` into $TOOLS, once):
# - fsx (fsx-rs): the fsx random-operation checker (read, write, mmap read/write, truncate,
#   fallocate, punch hole, copy_file_range, sendfile, fsync, close/reopen, invalidate), every
#   read checked against a model; FSX_SEEDS runs of FSX_OPS operations each;
# - pjdfstest (the Rust rewrite of the POSIX conformance suite; needs libacl1-dev to build):
#   one result per test case. It needs root with other ids to switch to, so it runs as root
#   of the container's user namespace (a full subordinate range: use a user with one).
# The tools are dynamically linked: their libraries go into the image next to them.
# Env: RBOX (default target/release/rbox, else target/debug/rbox), SUITE_USER (default
# rboxsub), TOOLS (default /var/tmp/rbox-fssuite-tools), FSX_OPS (default 20000), FSX_SEEDS
# (default "1 2 3"), PJD_PATTERNS (pjdfstest filters, default all). Writes
# bench/results/fssuite-<date>.md and prints it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-}"
if [ -z "$RBOX" ]; then
    RBOX="$repo/target/release/rbox"
    [ -x "$RBOX" ] || RBOX="$repo/target/debug/rbox"
fi
TOOLS="${TOOLS:-/var/tmp/rbox-fssuite-tools}"
FSX_OPS="${FSX_OPS:-20000}"
FSX_SEEDS="${FSX_SEEDS:-1 2 3}"
PJD_PATTERNS="${PJD_PATTERNS:-}"
need_tools run-fssuite podman fuse-overlayfs setpriv cargo ldd
[ -x "$RBOX" ] || { echo "run-fssuite: \`$RBOX\` missing: cargo build first" >&2; exit 1; }

mkdir -p "$TOOLS"
for t in fsx pjdfstest; do
    if [ ! -x "$TOOLS/bin/$t" ]; then
        echo "installing $t from crates.io into \`$TOOLS\`" >&2
        CARGO_INCREMENTAL=0 cargo install --quiet --locked --root "$TOOLS" "$t" >&2
    fi
done

if [ "$(id -u)" = 0 ]; then
    user="${SUITE_USER:-rboxsub}"
    id "$user" >/dev/null 2>&1 || { echo "run-fssuite: no user $user (see .ci/run)" >&2; exit 1; }
else
    user="$(id -un)"
fi
W="$(mktemp -d /var/tmp/rbox-fssuite.XXXXXX)"
chmod 755 "$W"
R="$W/user"
cleanup() {
    # the stores hold files of subordinate ids: remove them from inside the user namespace
    run "$W/rbox" --root "$R/rbox-store" --runroot "$R/rbox-run" unshare rm -rf "$R/rbox-store" 2>/dev/null || true
    run podman --root "$R/podman-store" --runroot "$R/podman-run" unshare rm -rf "$R/podman-store" 2>/dev/null || true
    rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
install -m 755 "$RBOX" "$W/rbox"
export BENCH_HOME="$W/home"
mkdir -p "$W/home" "$R"

# The image: busybox, the users pjdfstest switches to, the tools with their libraries, a
# lower file for fsx to start from (copied up on its first write) and the suite's script.
root="$R/rootfs"
busybox_rootfs "$root"
cat >>"$root/etc/passwd" <<'EOF'
nobody:x:65534:65534:nobody:/:/bin/sh
tests:x:1001:1001:tests:/:/bin/sh
EOF
cat >>"$root/etc/group" <<'EOF'
nogroup:x:65534:
tests:x:1001:
EOF
mkdir -p "$root/tools" "$root/lower"
for t in fsx pjdfstest; do
    cp "$TOOLS/bin/$t" "$root/tools/$t"
    for lib in $(ldd "$TOOLS/bin/$t" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
done
head -c 300000 /dev/urandom >"$root/lower/fsx.lower"
cat >"$root/tools/fsx.toml" <<'EOF'
flen = 1048576
[weights]
close_open = 1
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 2
fsync = 1
fdatasync = 1
posix_fallocate = 1
punch_hole = 1
sendfile = 1
posix_fadvise = 1
copy_file_range = 1
EOF
cat >"$root/tools/pjdfstest.toml" <<'EOF'
[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}
[settings]
naptime = 0.01
allow_remount = false
[dummy_auth]
entries = [["nobody", "nogroup"], ["tests", "tests"]]
EOF
cat >"$root/tools/suite.sh" <<'EOF'
#!/bin/sh
# inside the container: fsx runs, then pjdfstest, each line of the result prefixed
ops="$1"; seeds="$2"; shift 2
mkdir -p /t
for s in $seeds; do
    if /tools/fsx -f /tools/fsx.toml -N "$ops" -S "$s" -P /t /t/fsx.$s >/t/fsx.$s.out 2>&1; then
        echo "FSX new-file seed=$s ok"
    else
        echo "FSX new-file seed=$s FAIL: $(tail -n 3 /t/fsx.$s.out | tr '\n' ' ')"
    fi
done
# a lower file: fsx opens it for writing (copy-up) and truncates it to start
if /tools/fsx -f /tools/fsx.toml -N "$ops" -S 7 -P /t /lower/fsx.lower >/t/fsx.lower.out 2>&1; then
    echo "FSX lower-file seed=7 ok"
else
    echo "FSX lower-file seed=7 FAIL: $(tail -n 3 /t/fsx.lower.out | tr '\n' ' ')"
fi
mkdir -p /t/pjd
/tools/pjdfstest -c /tools/pjdfstest.toml -p /t/pjd "$@" 2>&1 | sed 's/^/PJD /'
EOF
chmod 755 "$root/tools/suite.sh"
tar -C "$root" -cf "$R/image.tar" .
rm -rf "$root"
cat >"$R/containers.conf" <<CONF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
[ "$(id -u)" = 0 ] && chown -R "$user:" "$W/home" "$R"
RB="$W/rbox --root $R/rbox-store --runroot $R/rbox-run"
P="podman --root $R/podman-store --runroot $R/podman-run --storage-driver overlay --storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs"
run $RB import "$R/image.tar" fssuite >/dev/null
run env CONTAINERS_CONF="$R/containers.conf" $P import "$R/image.tar" localhost/fssuite >/dev/null 2>&1
rm -f "$R/image.tar"

declare -A cmd=(
    [rbox-fuse-overlay]="$RB --storage-driver=fuse-overlay run --rm --network=none fssuite"
    [kernel-overlay]="$RB --storage-driver=overlay run --rm --network=none fssuite"
    [fuse-overlayfs]="env CONTAINERS_CONF=$R/containers.conf $P run --rm --network=none localhost/fssuite"
)
names=(rbox-fuse-overlay kernel-overlay fuse-overlayfs)
for n in "${names[@]}"; do
    echo "running the suites on $n" >&2
    # shellcheck disable=SC2086 # the command lines above are word lists
    run ${cmd[$n]} /tools/suite.sh "$FSX_OPS" "$FSX_SEEDS" $PJD_PATTERNS >"$W/$n.out" 2>&1 || true
done

# pjdfstest prints one line per test case, "NAME   ok", "NAME   FAILED" (the reason on the
# lines after) or "NAME   skipped" (a feature or privilege it lacks), then a summary line:
# "Summary: F failed, S skipped, P passed, 0 expected failures, T total".
count() { sed -n "s/^PJD Summary:.* \([0-9]*\) $2.*/\1/p" "$W/$1.out" | head -n 1; }
out="$here/results/fssuite-$(date -u +%Y%m%d-%H%M).md"
mkdir -p "$here/results"
{
    echo "# External filesystem suites: rbox's FUSE overlay vs kernel overlay vs fuse-overlayfs"
    echo
    echo "$(machine_line); $("$W/rbox" --version); fuse-overlayfs $(fuse-overlayfs --version 2>/dev/null | awk '/fuse-overlayfs/ {print $3; exit}'); $("$TOOLS/bin/fsx" --version 2>/dev/null | head -n 1); pjdfstest $(cargo install --list --root "$TOOLS" | awk '/^pjdfstest / {print $2}' | tr -d ':'); as $user (root of the container's user namespace)"
    echo
    echo "fsx: $FSX_OPS operations per run, seeds $FSX_SEEDS on a new file and seed 7 on a lower file (copy-up)."
    echo
    echo "Expected failures on all three: block devices (a user namespace may not make"
    echo "them) and character devices (made as 0/0: a whiteout, which overlay refuses). open::etxtbsy is racy in"
    echo "pjdfstest itself (it opens the copied sleep binary right after spawning it, before"
    echo "the exec may have happened): it passes or fails from run to run on any of the three."
    echo
    echo "| filesystem | fsx runs passed | pjdfstest passed | failed | skipped |"
    echo "|---|---:|---:|---:|---:|"
    for n in "${names[@]}"; do
        fsx_ok=$(grep -c '^FSX .* ok$' "$W/$n.out" || true)
        fsx_all=$(grep -c '^FSX ' "$W/$n.out" || true)
        echo "| $n | $fsx_ok/$fsx_all | $(count "$n" passed) | $(count "$n" failed) | $(count "$n" skipped) |"
    done
    for n in "${names[@]}"; do
        echo
        echo "## $n: failures"
        echo
        echo '```'
        grep -E '^FSX .*FAIL|^PJD [^ ]+ +FAILED$' "$W/$n.out" | sed 's/^PJD //' | sort || echo "(none)"
        if ! grep -q '^PJD Summary' "$W/$n.out" || ! grep -q '^FSX ' "$W/$n.out"; then
            echo "(the suites did not all run; the container's output ends:)"
            tail -n 20 "$W/$n.out"
        fi
        echo '```'
    done
} >"$out"
if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS" && cp "$W"/*.out "$KEEP_LOGS"/
fi
cat "$out"
