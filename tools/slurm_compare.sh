#!/usr/bin/env bash
# The runs of a planned comparison as a SLURM job array, each requeued on preemption and ahead of its
# time limit (tools/slurm_train.sh), resuming from its latest checkpoint:
#   python tools/compare.py MODELS --recipe CONFIG --seeds 3 --plan OUT
#   sbatch --array=0-$(( $(python -c "import json; print(len(json.load(open('OUT/plan.json'))['runs']))") - 1 )) \
#       tools/slurm_compare.sh OUT
#   python tools/compare.py --collect OUT          # when the array has finished (or to see what has)
# Array task K trains run K of OUT/plan.json with the #SBATCH settings of tools/slurm_train.sh
# (override them on the sbatch line: --gpus-per-node, --time ...).
#SBATCH --job-name=seg-compare
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@180
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail
OUT=${1:?usage: sbatch --array=0-N tools/slurm_compare.sh OUT}
K=${SLURM_ARRAY_TASK_ID:?run it as a job array (sbatch --array=...)}
PYTHON=${PYTHON:-python}
RUN=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["runs"][int(sys.argv[2])]["dir"])' \
      "$OUT/plan.json" "$K")
exec bash "$(dirname "$0")/slurm_train.sh" "$OUT/$RUN/config.json" "$OUT/$RUN"
