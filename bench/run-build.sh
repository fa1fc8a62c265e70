#!/usr/bin/env bash
# Images from Containerfiles and containers, as an unprivileged user, in one run (issue 10):
#  1. a cold build (`--no-cache`) of a multi-step Containerfile that copies a source tree of
#     FILES files and runs several RUN steps, rbox build against podman build (buildah);
#  2. a cached rebuild after one source file changed (the steps before the COPY hit the
#     cache, the COPY and the steps after it are redone);
#  3. commit of a container that changed 10 files of an image of 50,000.
# Each part is interleaved hyperfine rounds (lib.sh). Targets: cold build under 0.5x Podman's
# time, cached rebuild under 0.2x, commit of 10 changed files in well under a second.
#
#   sudo bench/run-build.sh    # as root: runs as $BENCH_USER
#   bench/run-build.sh         # as an ordinary user
#
# Env: RBOX (binary, default target/release/rbox), BENCH_USER (default rboxsub, when run as
# root), ROUNDS and RUNS (default 3 and 3), FILES (source tree size, default 5000),
# BENCH_SHOW=1. Writes bench/results/build-<date>.md and prints the tables.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-3}"
FILES="${FILES:-5000}"
need_tools run-build hyperfine podman jq setpriv
need_rbox run-build
bench_user run-build
W="$(mktemp -d /tmp/rbox-bench-build.XXXXXX)"
chmod 755 "$W"
X="$(mktemp -d /tmp/rbb.XXXXXX)"
export BENCH_HOME="$W/home"
R="$W/user"
rbox() { run "$W/rbox" --root "$R/rbox-store" --runroot "$R/rbox-run" "$@"; }
P=(podman --root "$R/podman-store" --runroot "$R/podman-run")
pod() { run env XDG_RUNTIME_DIR="$X" CONTAINERS_CONF="$R/containers.conf" "${P[@]}" "$@"; }
cleanup() {
    set +e
    rbox rm -f bench-commit >/dev/null 2>&1
    pod rm -f -t 0 bench-commit >/dev/null 2>&1
    if [ -s "$X/libpod/tmp/pause.pid" ]; then
        kill "$(cat "$X/libpod/tmp/pause.pid")" 2>/dev/null
    fi
    pod system reset -f >/dev/null 2>&1
    rm -rf "$W" "$X" 2>/dev/null || run rm -rf "$W" "$X" 2>/dev/null
    rm -rf "$W" "$X" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install -m 755 "$RBOX" "$W/rbox"
mkdir -p "$W/home" "$R"
chmod 700 "$X"
busybox_rootfs "$R/rootfs"
tar -C "$R/rootfs" -cf "$R/bb.tar" .
# the 50,000-file image: busybox plus /data/dNN/fNNNN
big="$R/big"
busybox_rootfs "$big"
for d in $(seq -w 0 49); do
    mkdir -p "$big/data/d$d"
    (cd "$big/data/d$d" && for f in $(seq -w 0 999); do echo "$d/$f" >"f$f"; done)
done
tar -C "$big" -cf "$R/big.tar" .
rm -rf "$big"
# the build context: FILES small files in 100 directories, and a Containerfile
ctx="$R/ctx"
mkdir -p "$ctx/src"
per=$(((FILES + 99) / 100))
for d in $(seq -w 0 99); do
    mkdir -p "$ctx/src/m$d"
    (cd "$ctx/src/m$d" && for f in $(seq 1 "$per"); do echo "module $d file $f" >"f$f.c"; done)
done
cat >"$ctx/Containerfile" <<'EOF'
FROM localhost/bench-bb
ENV APP=/app
RUN mkdir -p /app/bin && echo 'built' >/app/bin/version
WORKDIR /app
COPY src/ /app/src/
RUN find /app/src -type f | wc -l >/app/count
RUN tar -cf /app/src.tar -C /app src && rm -rf /app/src/m00
RUN echo done >/app/done
CMD ["cat", "/app/count"]
EOF
cat >"$R/containers.conf" <<CONF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
[ "$(id -u)" = 0 ] && chown -R "$user:" "$W/home" "$R" "$X"
echo "preparing: imports, one warm-up build each" >&2
rbox import "$R/bb.tar" bench-bb >/dev/null
pod import -q "$R/bb.tar" localhost/bench-bb >/dev/null
rbox import "$R/big.tar" bench-big >/dev/null
pod import -q "$R/big.tar" localhost/bench-big >/dev/null
rbox build -q --network=none -t bench-app "$ctx" >/dev/null
pod build -q --network=none -t bench-app "$ctx" >/dev/null

if [ "$(id -u)" = 0 ]; then
    pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME"
else
    pre="env HOME=$BENCH_HOME"
fi
rb="$W/rbox --root $R/rbox-store --runroot $R/rbox-run"
pd="env XDG_RUNTIME_DIR=$X CONTAINERS_CONF=$R/containers.conf ${P[*]}"

# 1. Cold builds.
cold="$W/cold.json"
interleaved "$cold" "$ROUNDS" "$RUNS" 0 -- \
    -n "rbox build --no-cache" "$pre $rb build -q --no-cache --network=none -t bench-app $ctx" \
    -n "podman build --no-cache" "$pre $pd build -q --no-cache --network=none -t bench-app $ctx"

# 2. Cached rebuilds after one source file changed (a new content each run).
change="$pre sh -c 'date +%s%N >$ctx/src/m50/f1.c'"
cached="$W/cached.json"
interleaved "$cached" "$ROUNDS" "$RUNS" 0 -- --prepare "$change" \
    -n "rbox build (one file changed)" "$pre $rb build -q --network=none -t bench-app $ctx" \
    -n "podman build (one file changed)" "$pre $pd build -q --network=none -t bench-app $ctx"

# 3. Commit of 10 changed files out of 50,000.
touch10='for d in 0 1 2 3 4 5 6 7 8 9; do echo changed >/data/d0$d/f000; done'
rbox run --network=none --name bench-commit bench-big sh -c "$touch10"
pod run --network=none --name bench-commit localhost/bench-big sh -c "$touch10"
commit="$W/commit.json"
interleaved "$commit" "$ROUNDS" "$RUNS" 1 -- \
    -n "rbox commit (10 of 50,000 files changed)" "$pre $rb commit -q bench-commit bench-committed" \
    -n "podman commit (10 of 50,000 files changed)" "$pre $pd commit -q bench-commit localhost/bench-committed"

out="$repo/bench/results/build-$(date -u +%Y%m%d-%H%M).md"
{
    echo "# Images: build from a Containerfile, cached rebuild, commit"
    echo
    echo "$(machine_line); rbox $("$W/rbox" --version | awk '{print $2}'); $(podman --version)"
    echo
    echo "Containerfile: FROM busybox, ENV, 4 RUN steps, WORKDIR, COPY of a $FILES-file source tree, CMD."
    echo
    echo "## Cold build (--no-cache; hyperfine, $ROUNDS rounds x $RUNS runs, interleaved)"
    echo
    table "$cold" "podman build --no-cache"
    echo
    echo "## Rebuild after one source file changed"
    echo
    table "$cached" "podman build (one file changed)"
    echo
    echo "## Commit of a container that changed 10 files of 50,000"
    echo
    table "$commit" "podman commit (10 of 50,000 files changed)"
} >"$out"
cat "$out"
echo "written: $out" >&2
