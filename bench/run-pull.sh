#!/usr/bin/env bash
# Pull time of a Debian image (about 50 MB compressed, one layer) from a local registry
# (Debian's docker-registry on 127.0.0.1, plain HTTP), interleaved in rounds with hyperfine:
#   rbox pull            (into an empty store each run)
#   podman pull          (overlay storage, empty store each run)
#   skopeo copy + umoci unpack --rootless
#   curl | tar -xz       (the same layer blob: the floor of a download + gunzip + untar)
# Target (issue 3): rbox faster than the curl | tar floor and under half of Podman's time.
#
#   cargo build --release && sudo bench/run-pull.sh
#
# Needs root for the setup (debootstrap of the image, cached in bench/results/tmp/); the pulls
# run as $BENCH_USER (default rboxsub). Env: RBOX, BENCH_USER, ROUNDS (default 3), RUNS
# (per round and command, default 3), VARIANT (debootstrap variant, default minbase).
# Writes bench/results/pull-<date>.md and prints the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-3}"
VARIANT="${VARIANT:-minbase}"
user="${BENCH_USER:-rboxsub}"
[ "$(id -u)" = 0 ] || { echo "run-pull: run as root (debootstrap, registry setup)" >&2; exit 1; }
need_tools run-pull hyperfine podman skopeo umoci curl jq debootstrap docker-registry setpriv
need_rbox run-pull
id "$user" >/dev/null 2>&1 || { echo "run-pull: no user $user (see .ci/run)" >&2; exit 1; }

cache="$here/results/tmp"
mkdir -p "$cache"
rootfs_tar="$cache/debian-bookworm-$VARIANT-v2.tar"
if [ ! -s "$rootfs_tar" ]; then
    echo "debootstrap --variant=$VARIANT bookworm (cached in $cache)" >&2
    d="$(mktemp -d "$cache/debootstrap.XXXXXX")"
    debootstrap --variant="$VARIANT" bookworm "$d" http://deb.debian.org/debian >&2
    # Without the downloaded .debs and apt lists, as the distribution's own images are made.
    tar --numeric-owner -C "$d" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' -cf "$rootfs_tar.tmp" .
    rm -rf "$d"
    mv "$rootfs_tar.tmp" "$rootfs_tar"
fi

workdir_with_registry pull
install -m 755 "$RBOX" "$W/rbox"
mkdir -p "$W/home"
export BENCH_HOME="$W/home"

start_registry "$W/reg"

# Push the image once (podman compresses the layer with gzip on push).
podman_conf "$W/containers.conf"
image="$addr/bench/debian:bookworm"
PR=(podman --root "$W/push-store" --runroot "$W/push-run" --storage-driver vfs)
CONTAINERS_CONF="$W/containers.conf" "${PR[@]}" import "$rootfs_tar" localhost/bench-debian >/dev/null
CONTAINERS_CONF="$W/containers.conf" "${PR[@]}" push --tls-verify=false localhost/bench-debian "docker://$image" >/dev/null 2>&1
rm -rf "$W/push-store" "$W/push-run" 2>/dev/null || true
manifest="$(skopeo inspect --raw --tls-verify=false "docker://$image")"
layer="$(jq -r '.layers[0].digest' <<<"$manifest")"
size_mb="$(jq -r '[.layers[].size] | add / 1048576 | . * 10 | round / 10' <<<"$manifest")"
echo "image $image: $(jq '.layers | length' <<<"$manifest") layer(s), $size_mb MiB compressed" >&2

U="$W/user"
mkdir -p "$U"
chown -R "$user:" "$W/home" "$U"
pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME CONTAINERS_CONF=$W/containers.conf"
# Each run starts from an empty store: the prepare step removes it as root.
# An empty store for each run. The old one is moved aside, not deleted: after a mass deletion
# ext4 spends seconds skipping recently freed inodes when allocating new ones (seen with perf),
# which would measure the filesystem instead of the tools. The trash goes at the end.
mkdir -p "$W/trash"
fresh() {
    local cmd="" d
    for d in "$@"; do cmd="$cmd mv $d $W/trash/\$(date +%s%N) 2>/dev/null;"; done
    echo "sh -c '$cmd true'"
}

json="$W/pull.json"
interleaved "$json" "$ROUNDS" "$RUNS" 0 -- \
    --prepare "$(fresh "$U/rbox-store")" \
    -n "rbox pull" "$pre $W/rbox --root $U/rbox-store --runroot $U/rbox-run pull -q --tls-verify=false $image" \
    --prepare "$(fresh "$U/podman-store")" \
    -n "podman pull" "$pre podman --root $U/podman-store --runroot $U/podman-run --storage-driver overlay pull -q --tls-verify=false $image" \
    --prepare "$(fresh "$U/oci" "$U/bundle")" \
    -n "skopeo copy + umoci unpack" "$pre sh -c 'skopeo copy -q --src-tls-verify=false docker://$image oci:$U/oci:latest && umoci unpack --rootless --image $U/oci:latest $U/bundle'" \
    --prepare "sh -c 'mv $U/floor $W/trash/\$(date +%s%N) 2>/dev/null; mkdir $U/floor && chown $user: $U/floor'" \
    -n "floor: curl piped to tar -xz" "$pre sh -c 'curl -sf http://$addr/v2/bench/debian/blobs/$layer | tar -xz -C $U/floor'"

mkdir -p "$here/results"
out="$here/results/pull-$(date -u +%Y%m%d-%H%M).md"
{
    echo "# Pull: Debian bookworm ($VARIANT, $size_mb MiB compressed) from a local registry, as user $user"
    echo
    echo "$(machine_line); $("$W/rbox" --version | head -1), $(podman --version), $(skopeo --version), $(umoci --version)"
    echo "$ROUNDS interleaved rounds x $RUNS runs per command (hyperfine -N), each run into an empty store."
    echo
    table "$json" "floor: curl piped to tar -xz"
} | tee "$out"
echo >&2
echo "written: $out" >&2
