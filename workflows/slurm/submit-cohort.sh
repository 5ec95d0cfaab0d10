#!/bin/bash
# Submit a cohort: the participant array (one task per participant), then the group level,
# which starts when every array task has ended (successfully or not: the cohort table lists the
# failures).
#
#   workflows/slurm/submit-cohort.sh BIDS_DIR OUTPUT_DIR WORK_ROOT [bids-synth options]
#
# Environment: PARTICIPANTS (file of labels, see participants-array.sbatch), BIDS_SYNTH (the
# command, default bids-synth), MAX_PARALLEL (array tasks running at once, default 50),
# SBATCH_ARGS (extra sbatch options for both jobs, e.g. "--partition=short --account=lab").
# Prints the two job ids.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ $# -lt 3 ]]; then
    echo "usage: $0 BIDS_DIR OUTPUT_DIR WORK_ROOT [bids-synth options]" >&2
    exit 2
fi
bids_dir=$(realpath "$1") output_dir=$(realpath -m "$2") work_root=$(realpath -m "$3")
shift 3
n=$(bash "$here/participants-array.sbatch" --list "$bids_dir" | wc -l)
if [[ "$n" -eq 0 ]]; then
    echo "no participants found in $bids_dir" >&2
    exit 4
fi
mkdir -p "$work_root"
# shellcheck disable=SC2086  # SBATCH_ARGS holds several options
array=$(sbatch --parsable ${SBATCH_ARGS:-} --chdir="$work_root" --array="1-$n%${MAX_PARALLEL:-50}" \
    "$here/participants-array.sbatch" "$bids_dir" "$output_dir" "$work_root" "$@")
array=${array%%;*}  # --parsable prints "id[;cluster]"
# shellcheck disable=SC2086
group=$(sbatch --parsable ${SBATCH_ARGS:-} --chdir="$work_root" --dependency="afterany:$array" \
    "$here/group.sbatch" "$bids_dir" "$output_dir")
echo "participants: job $array ($n array tasks); group level: job ${group%%;*}"
