#!/usr/bin/env bash
# The first thing to run on a lent GPU (under 8 minutes): every CUDA path of the product,
# measured, everything written under $OUT.
#
#   OUT=/some/folder bash benchmarks/gpu_suite.sh           # on the GPU machine
#   OUT=/tmp/x bash benchmarks/gpu_suite.sh --smoke         # CPU test of the suite (~1 min)
#
# Steps (each under its own time limit; one failing does not stop the others):
#   cuda_tests  pytest -m cuda (the CUDA tests; they skip without CUDA)
#   blend       GPU blending against CPU blending on the same windows (max difference)
#   bf16        bf16 autocast against fp32 predictions of the default model (agreement)
#   ddp         finetune under torchrun: 2 processes (nccl, one GPU) if allowed, else 1
#   train       training step time of ti and s at batch 32 (512² tiles, bf16)
#   segment     ces segment on a synthetic 25,000 x 17,000 dB scene with random ti, s and l
#               (wall time, windows per second; goal: l in <= 30 s on one H100-class GPU)
# Results: $OUT/<step>.json (figures), $OUT/<step>.log (output), $OUT/summary.txt (rc and
# seconds of each step, then every step's figures). --smoke shrinks every size and runs
# on the CPU. PY selects the interpreter (default: .venv/bin/python, else python3).
set -u
cd "$(dirname "$0")/.."
SMOKE=""
[ "${1:-}" = "--smoke" ] && SMOKE="--smoke"
OUT="${OUT:-$(mktemp -d /tmp/ces-gpu-suite-XXXXXX)}"
mkdir -p "$OUT"
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
FAILED=0

# the limits are for a GPU's 8 minutes; a smoke run on a loaded CPU gets LIMIT_SCALE times more
LIMIT_SCALE="${LIMIT_SCALE:-$([ -n "$SMOKE" ] && echo 10 || echo 1)}"

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$(($2 * LIMIT_SCALE))
  shift 2
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name rc $rc seconds $((SECONDS - t0)) (limit $limit)" | tee -a "$SUMMARY"
  [ "$rc" -ne 0 ] && FAILED=$((FAILED + 1))
  return 0
}

echo "# gpu_suite ${SMOKE:-full} on $(hostname) $(date -u +%FT%TZ), OUT=$OUT" | tee -a "$SUMMARY"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' \
  2>&1 | tee -a "$SUMMARY"
if command -v nvidia-smi > /dev/null; then nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; fi

# limits add up to 470 s (the suite's budget is 8 minutes)
if [ -n "$SMOKE" ]; then  # the suite tests itself: the CUDA tests are collected (and skip)
  step cuda_tests 50 "$PY" -m pytest -q -rs -m cuda -p no:cacheprovider tests/core/inference/test_cuda.py
else
  step cuda_tests 50 "$PY" -m pytest -q -rs -m cuda -p no:cacheprovider tests/
fi
for name in blend bf16; do
  step "$name" 25 "$PY" benchmarks/gpu_suite.py "$name" --out "$OUT" $SMOKE
done
step ddp 45 "$PY" benchmarks/gpu_suite.py ddp --out "$OUT" $SMOKE
step train 45 "$PY" benchmarks/gpu_suite.py train --out "$OUT" $SMOKE
step segment 280 "$PY" benchmarks/gpu_suite.py segment --out "$OUT" $SMOKE \
  --budget $((260 * LIMIT_SCALE))

for f in "$OUT"/*.json; do
  [ -e "$f" ] && { echo "== $(basename "$f")"; cat "$f"; } >> "$SUMMARY"
done
echo "# gpu_suite done: $FAILED step(s) failed" | tee -a "$SUMMARY"
exit "$FAILED"
