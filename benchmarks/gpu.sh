#!/usr/bin/env bash
# One command for a CUDA machine (issue 20): the GPU-marked tests (AMP for every method,
# resume, DDP over NCCL on the available GPUs, GPU vs CPU prediction), the training-step
# benchmark of every method at the paper profile (it/s, peak CUDA memory), ours against the
# plain reference loops end to end, and a 10-minute EFFDNet run on ACDC with its val Dice.
# Prints everything as Markdown; writes the same to $OUT (default runs/gpu) as gpu.md.
#
#     bash benchmarks/gpu.sh [--quick]      # --quick: 2-minute ACDC run, 1 repeat
#
# Needs: the venv of scripts/setup_env.sh with a CUDA build of torch (the lock pins the CPU
# build; on a GPU machine install a matching CUDA wheel first), ../shared/data/acdc.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/gpu}
MINUTES=10
REPEATS=3
if [[ "${1:-}" == "--quick" ]]; then MINUTES=2; REPEATS=1; fi
mkdir -p "$OUT"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu.sh: no CUDA GPU visible to $PY (torch.cuda.is_available() is False); nothing run" >&2
  exit 2
fi
{
  echo "# GPU checks ($(date -u +%Y-%m-%dT%H:%MZ))"
  "$PY" -c "import torch; print('torch', torch.__version__, '· CUDA', torch.version.cuda, '·', torch.cuda.device_count(), '×', torch.cuda.get_device_name(0))"
  echo
  echo "## GPU-marked tests"
  echo '```'
  "$PY" -m pytest -q -p no:cacheprovider -m cuda tests 2>&1 | tail -n 15
  echo '```'
  echo
  echo "## Training step, loss only (random batches)"
  "$PY" benchmarks/train_step.py --device cuda --methods pce effdnet refineseg disambig mixed full --steps 20
  echo
  echo "## Ours vs the plain reference loops, end to end (paper profile)"
  "$PY" benchmarks/train_step.py --device cuda --vs-baseline --methods pce effdnet \
      --repeats "$REPEATS" --warmup 10 --measure 50 --baseline-workers 4 8
  echo
  echo "## EFFDNet on ACDC, ${MINUTES} minutes, paper profile"
  "$PY" benchmarks/acdc.py effdnet --profile paper --device cuda --minutes "$MINUTES" \
      --inner-val 10 --out "$OUT/acdc-effdnet" 2>&1 | grep -v '^   {'
} 2>&1 | tee "$OUT/gpu.md"
