#!/usr/bin/env bash
# Apptainer as HPC sites run it, emulated with bubblewrap (Debian `bubblewrap`), without Apptainer:
#
#   scripts/apptainer-emulation.sh                     # the demo, over this checkout and its .venv
#   scripts/apptainer-emulation.sh --rootfs DIR --env-file FILE   # over an image's root filesystem
#   scripts/apptainer-emulation.sh [--no-home] -- COMMAND [ARG...]
#
# `apptainer run --cleanenv IMAGE` by default         here
#   the image's filesystem read-only (SIF)             DIR (default: the host's /) bound read-only
#   the calling user's uid/gid, not the image's user   uid/gid EMU_UID (12345) in a new user
#                                                      namespace, with an /etc/passwd and /etc/group
#                                                      entry as Apptainer adds one
#   the host's $HOME bound at its path                 a fresh empty folder bound as
#                                                      /home/user$EMU_UID (the rest of /home a
#                                                      read-only tmpfs); with --no-home (Apptainer's
#                                                      --no-home) $HOME does not exist
#   the working directory bound at its path            a fresh folder, the command's working directory
#   the host's /tmp and /var/tmp                       fresh tmpfs
#   /dev, /proc, /sys, /etc/hosts, /etc/resolv.conf    a minimal /dev, a new /proc (own pid
#   from the host                                      namespace), the rest bound read-only
#   --cleanenv: TERM and the proxy variables pass;     --clearenv, then the same variables; the
#   HOME, LANG=C and APPTAINER_* set; the image's      image's environment from --env-file
#   environment                                        (KEY=VALUE lines, HOME ignored) or, over the
#                                                      host, PATH with .venv/bin first and
#                                                      PYTHONPATH=the checkout
#
# After the command, anything written into $HOME is listed and fails the run: bids-synth keeps its
# caches in the work folder or a temporary folder, never in the home (small, shared, or missing on
# clusters). The default command is `bids-synth demo demo_output` with --nprocs $NPROCS (default 2)
# and $DEMO_ARGS. Run as root, the sandbox's uid is root outside the namespace (without
# capabilities: the read-only mounts stop its writes); run as a user, it is that user, as with
# Apptainer. Environment: EMU_DIR (scratch folder, default /tmp/bids-synth-apptainer; its home/,
# pwd/ and etc/ are made afresh), EMU_UID, VENV (default .venv), NPROCS, DEMO_ARGS.
set -euo pipefail

rootfs=/
env_file=
home_bound=bound
while [[ $# -gt 0 ]]; do
    case $1 in
        --rootfs) rootfs=$(realpath "$2"); shift 2 ;;
        --env-file) env_file=$(realpath "$2"); shift 2 ;;
        --no-home) home_bound=; shift ;;
        --) shift; break ;;
        *) break ;;
    esac
done
cd "$(dirname "$0")/.."
repo=$PWD
command -v bwrap >/dev/null || { echo "missing bwrap (apt-get install bubblewrap)" >&2; exit 2; }

EMU_DIR=${EMU_DIR:-/tmp/bids-synth-apptainer}
EMU_UID=${EMU_UID:-12345}
user=user$EMU_UID
home=/home/$user
rm -rf "${EMU_DIR:?}/home" "${EMU_DIR:?}/pwd" "${EMU_DIR:?}/etc"
mkdir -p "$EMU_DIR/home" "$EMU_DIR/pwd" "$EMU_DIR/etc"
log() { printf '[apptainer-emulation %(%H:%M:%S)T] %s\n' -1 "$*"; }

# the user's entries, as Apptainer adds them to the image's passwd and group files
cp "$rootfs/etc/passwd" "$rootfs/etc/group" "$EMU_DIR/etc/"
echo "$user:x:$EMU_UID:$EMU_UID:$user:$home:/bin/sh" >>"$EMU_DIR/etc/passwd"
echo "$user:x:$EMU_UID:" >>"$EMU_DIR/etc/group"

args=(
    --unshare-user --uid "$EMU_UID" --gid "$EMU_UID" --unshare-pid --die-with-parent
    --ro-bind "$rootfs" / --dev /dev --proc /proc --ro-bind /sys /sys
    --tmpfs /tmp --tmpfs /var/tmp
    --ro-bind "$EMU_DIR/etc/passwd" /etc/passwd --ro-bind "$EMU_DIR/etc/group" /etc/group
)
for file in /etc/hosts /etc/resolv.conf; do  # the host's, over an image's own
    if [[ "$rootfs" != / && -f "$rootfs$file" && ! -L "$rootfs$file" ]]; then
        args+=(--ro-bind "$file" "$file")
    fi
done
args+=(--tmpfs /home)
if [[ -n "$home_bound" ]]; then args+=(--bind "$EMU_DIR/home" "$home"); fi
args+=(--remount-ro /home --bind "$EMU_DIR/pwd" "$EMU_DIR/pwd" --chdir "$EMU_DIR/pwd")

# --cleanenv: only what Apptainer itself passes or sets, then the image's environment
name=${rootfs##*/}
args+=(--clearenv --setenv HOME "$home" --setenv LANG C
       --setenv APPTAINER_CONTAINER "$rootfs" --setenv APPTAINER_NAME "${name:-host}")
for name in TERM http_proxy HTTP_PROXY https_proxy HTTPS_PROXY no_proxy NO_PROXY all_proxy \
    ALL_PROXY ftp_proxy FTP_PROXY; do
    if [[ -n "${!name:-}" ]]; then args+=(--setenv "$name" "${!name}"); fi
done
if [[ -n "$env_file" ]]; then
    while IFS='=' read -r name value; do
        if [[ -n "$name" && "$name" != HOME ]]; then args+=(--setenv "$name" "$value"); fi
    done <"$env_file"
else
    venv=$(realpath "${VENV:-.venv}")
    args+=(--setenv PATH "$venv/bin:/usr/local/bin:/usr/bin:/bin" --setenv PYTHONPATH "$repo")
fi

if [[ $# -eq 0 ]]; then
    # shellcheck disable=SC2086  # DEMO_ARGS holds several options
    set -- bids-synth demo demo_output --nprocs "${NPROCS:-2}" ${DEMO_ARGS:-}
fi
log "uid $EMU_UID over $rootfs (read-only), HOME $home ${home_bound:-absent}: $*"
start=$SECONDS
status=0
bwrap "${args[@]}" -- "$@" || status=$?
log "exited with $status after $((SECONDS - start)) s"
written=$(cd "$EMU_DIR/home" && find . -mindepth 1 | head -20)
if [[ -n "$written" ]]; then
    echo "wrote into \$HOME ($home):" >&2
    echo "$written" >&2
    exit 1
fi
exit "$status"
