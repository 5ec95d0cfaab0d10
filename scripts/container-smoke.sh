#!/usr/bin/env bash
# Container smoke test without a Docker engine or a registry: podman + buildah (Debian packages).
#
#   scripts/container-smoke.sh            # base image, bids-synth image, then the demo inside it
#
# 1. a minimal Debian bookworm base with python3, made with debootstrap and imported into podman
#    (no registry image is pulled);
# 2. the bids-synth image from the Dockerfile on that base (--build-arg BASE_IMAGE=...), with this
#    machine's pip sources (find-links folders, file:// indexes, its CA bundle) bind-mounted into
#    the build only; torch is the CPU wheel found there (TORCH_INDEX empty);
# 3. `bids-synth demo` inside the image with --network=none, as the non-root user;
# 4. with bubblewrap installed, the demo again as Apptainer runs the image on a cluster
#    (scripts/apptainer-emulation.sh over the image's root filesystem: read-only, another uid,
#    --cleanenv, nothing written into $HOME).
#
# Environment: SMOKE_DIR (scratch folder, default /tmp/bids-synth-container-smoke), IMAGE (tag,
# default localhost/bids-synth:smoke), BASE (default localhost/bids-synth-base:bookworm; rebuilt
# with REBUILD_BASE=1), DEBIAN_MIRROR, NPROCS (default 2), DEMO_ARGS (extra demo options).
# Needs root (debootstrap) and: apt-get install podman buildah debootstrap runc [bubblewrap]
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE_DIR=${SMOKE_DIR:-/tmp/bids-synth-container-smoke}
IMAGE=${IMAGE:-localhost/bids-synth:smoke}
BASE=${BASE:-localhost/bids-synth-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RUN_OPTS=(--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --network=none)

log() { printf '[container-smoke %(%H:%M:%S)T] %s\n' -1 "$*"; }
for tool in podman debootstrap; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install podman buildah debootstrap runc)" >&2; exit 2; }
done
mkdir -p "$SMOKE_DIR"

# --- 1. base image ------------------------------------------------------------------------------
if [[ -n "${REBUILD_BASE:-}" ]] || ! podman image exists "$BASE"; then
    log "debootstrap bookworm (minbase + python3) from $MIRROR"
    start=$SECONDS
    rootfs="$SMOKE_DIR/rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$SMOKE_DIR/debootstrap.log" 2>&1 \
        || { tail -20 "$SMOKE_DIR/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$rootfs"
    log "base $BASE imported in $((SECONDS - start)) s"
fi

# --- 2. bids-synth image --------------------------------------------------------------------------
# pip sources of this machine (environment, then pip's configuration), mounted read-only
pip_setting() {
    local value=${!1:-}
    [[ -n "$value" ]] || value=$(python3 -m pip config list 2>/dev/null \
        | sed -n "s/^[a-z:]*\.$2='\(.*\)'$/\1/p" | tail -1)
    printf '%s' "$value"
}
find_links=$(pip_setting PIP_FIND_LINKS find-links)
extra_index=$(pip_setting PIP_EXTRA_INDEX_URL extra-index-url)
build_args=(--build-arg "BASE_IMAGE=$BASE" --build-arg "TORCH_INDEX=")
volumes=()
for location in $find_links $extra_index; do
    folder=${location#file://}
    [[ "$folder" == /* && -d "$folder" ]] || continue
    [[ "$location" == file://* ]] && folder=$(dirname "$folder")  # .../simple links to ../../files
    volumes+=(--volume "$folder:$folder:ro")
done
[[ -n "$find_links" ]] && build_args+=(--build-arg "PIP_FIND_LINKS=$find_links")
[[ -n "$extra_index" ]] && build_args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra_index")
cert=$(pip_setting PIP_CERT cert)  # e.g. the CA bundle of an intercepting proxy
if [[ -f "$cert" ]]; then
    volumes+=(--volume "$cert:/etc/pip-build-ca.crt:ro")
    build_args+=(--build-arg "PIP_CERT=/etc/pip-build-ca.crt")
fi
log "building $IMAGE on $BASE (pip sources: ${find_links:-none} ${extra_index:-})"
start=$SECONDS
podman build --runtime runc "${build_args[@]}" "${volumes[@]}" -t "$IMAGE" . \
    >"$SMOKE_DIR/build.log" 2>&1 || { tail -30 "$SMOKE_DIR/build.log" >&2; exit 1; }
log "image built in $((SECONDS - start)) s: $(podman image inspect "$IMAGE" --format '{{.Size}}' \
    | awk '{printf "%.2f GB", $1 / 1e9}')"

# --- 3. the demo inside it, without network ------------------------------------------------------
out="$SMOKE_DIR/out"
rm -rf "$out"
mkdir -p "$out"
chown 1001:1001 "$out" 2>/dev/null || podman unshare chown 1001:1001 "$out"  # the image's user
log "bids-synth --version: $(podman run --rm "${RUN_OPTS[@]}" "$IMAGE" --version)"
log "running the demo in the container (--network=none)"
start=$SECONDS
# shellcheck disable=SC2086  # DEMO_ARGS holds several options
podman run --rm "${RUN_OPTS[@]}" -v "$out:/out" "$IMAGE" \
    demo /out/demo --nprocs "${NPROCS:-2}" ${DEMO_ARGS:-} 2>&1 | tee "$SMOKE_DIR/demo.log" | tail -3
status=${PIPESTATUS[0]}
log "demo exited with $status after $((SECONDS - start)) s"
table="$out/demo/derivatives/group/cohort.tsv"
[[ "$status" -eq 0 && -f "$table" ]] || { echo "demo failed, see $SMOKE_DIR/demo.log" >&2; exit 1; }
column -t -s $'\t' "$table" | cut -c1-100
if awk -F'\t' 'NR > 1 && $3 != "success" { bad = 1 } END { exit !bad }' "$table"; then
    echo "not every participant succeeded" >&2
    exit 1
fi
container=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['GeneratedBy'][0].get('Container'))" \
    "$out/demo/derivatives/dataset_description.json")
log "dataset_description GeneratedBy.Container: $container"
log "ok: derivatives in $out/demo/derivatives"

# --- 4. the demo as Apptainer runs the image (bubblewrap over its root filesystem) ---------------
if ! command -v bwrap >/dev/null; then
    log "bubblewrap missing: Apptainer emulation skipped (apt-get install bubblewrap)"
    exit 0
fi
podman image inspect "$IMAGE" --format '{{range .Config.Env}}{{println .}}{{end}}' \
    >"$SMOKE_DIR/image.env"
rootfs=$(podman image mount "$IMAGE")
trap 'podman image unmount "$IMAGE" >/dev/null' EXIT
log "running the demo as Apptainer would (image root read-only, uid 12345, --cleanenv)"
# shellcheck disable=SC2086  # DEMO_ARGS holds several options
EMU_DIR="$SMOKE_DIR/apptainer" scripts/apptainer-emulation.sh --rootfs "$rootfs" \
    --env-file "$SMOKE_DIR/image.env" -- bids-synth demo demo_output --nprocs "${NPROCS:-2}" \
    ${DEMO_ARGS:-} >"$SMOKE_DIR/apptainer.log" 2>&1 \
    || { tail -20 "$SMOKE_DIR/apptainer.log" >&2; exit 1; }
tail -1 "$SMOKE_DIR/apptainer.log"
log "ok: derivatives in $SMOKE_DIR/apptainer/pwd/demo_output/derivatives"
