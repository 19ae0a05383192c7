#!/usr/bin/env bash
# The GPU check, prepared for the day a CUDA machine is at hand (a few minutes on one GPU):
#   tools/gpu_check.sh [OUT_DIR]        (PYTHON=... to pick the interpreter)
# 1. the CUDA tests; 2. the attention ops forward + backward, time and peak memory, at 97x97 and
# 128x256, every implementation (criss-cross einsum vs log-sum-exp, PAM chunked vs SDPA, non-local);
# 3. model level, R-50-D8 FCN / CCNet / DANet / NonLocal: inference fps at 512x1024 and 1024x2048
# (whole image, batch 1) and training throughput at 512x1024 batch 2, fp32 and the fast default.
# Every table lands in OUT_DIR; choose the CUDA dispatch defaults (seg/ops) from ops.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
$PY - <<'PYEOF' | tee "$OUT/gpu.txt"
import torch
assert torch.cuda.is_available(), 'tools/gpu_check.sh needs a CUDA device'
print(torch.__version__, torch.cuda.get_device_name(), f'capability {torch.cuda.get_device_capability()}',
      f'{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB')
PYEOF
$PY -m pytest -q -k cuda tests/ 2>&1 | tee "$OUT/tests.txt"
$PY tools/benchmark_ops.py --device cuda --shapes 97x97 128x256 --modes fwd fwdbwd --all-impls --repeat 5 \
    --json "$OUT/ops.json" --markdown "$OUT/ops.md"
for m in fcn ccnet danet nonlocal; do
    cfg=configs/$m/${m}_r50-d8_4xb2-40k_cityscapes-512x1024.py
    for p in fp32 auto; do
        $PY tools/benchmark.py "$cfg" --device cuda --mode eval --shape 512 1024 --precision "$p" --repeat 3 \
            --iters 50 | tee "$OUT/${m}_eval_512x1024_$p.md"
        $PY tools/benchmark.py "$cfg" --device cuda --mode eval --shape 1024 2048 --precision "$p" --repeat 1 \
            --iters 20 | tee "$OUT/${m}_eval_1024x2048_$p.md"
        $PY tools/benchmark.py "$cfg" --device cuda --mode train --shape 512 1024 --batch-size 2 --precision "$p" \
            --repeat 1 --iters 20 | tee "$OUT/${m}_train_512x1024_$p.md"
    done
done
grep -H "^fps\|^peak\|^median_s" "$OUT"/*_eval_*.md "$OUT"/*_train_*.md | tee "$OUT/summary.txt"
