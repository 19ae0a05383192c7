#!/usr/bin/env bash
# Training on a SLURM cluster that survives preemption and time limits:
#   sbatch tools/slurm_train.sh CONFIG [WORK_DIR] [extra tools/train.py flags]
# One job step: on every node, torchrun starts GPUS_PER_NODE workers (DDP); the group restarts up to 3
# times when a worker dies, resuming from the latest checkpoint (--resume starts fresh the first time).
# Preemption (SLURM sends SIGTERM to every process and, with --requeue, requeues the job) and the time
# limit (SIGUSR1 to this script 3 minutes ahead: it sends SIGTERM to the step and requeues the job) make
# the workers finish the iteration, save it and exit 75; the requeued job continues where it stopped.
# scancel is not trapped: a cancelled job saves its iteration and stays cancelled.
#SBATCH --job-name=seg
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@180
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -uo pipefail

CONFIG=${1:?usage: sbatch tools/slurm_train.sh CONFIG [WORK_DIR] [tools/train.py flags]}
WORK_DIR=${2:-work_dirs/$(basename "$CONFIG" .py)}
shift $(( $# >= 2 ? 2 : 1 ))
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-4}}
PORT=${PORT:-29500}
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PYTHON=${PYTHON:-python}

stop_and_requeue() {
  echo "$(date -u +%FT%TZ) time limit near: stopping the workers after their iteration, requeueing job $SLURM_JOB_ID"
  kill -TERM "$STEP" 2>/dev/null   # srun forwards it to torchrun, torchrun to its workers
  wait "$STEP"
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
}
trap stop_and_requeue USR1

srun --kill-on-bad-exit=1 "$PYTHON" -m torch.distributed.run --nnodes="$SLURM_NNODES" \
  --nproc_per_node="$GPUS_PER_NODE" --max-restarts=3 --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d \
  --rdzv-endpoint="$HEAD:$PORT" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --launcher pytorch --resume "$@" &
STEP=$!
wait "$STEP"
CODE=$?
echo "$(date -u +%FT%TZ) training step ended with code $CODE"
exit "$CODE"
