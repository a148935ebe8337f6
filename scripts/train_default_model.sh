#!/usr/bin/env bash
# Trains the next candidate for the default model ces-s1-water and validates it beside the
# shipped one (models/README.md): data list, init, training, fp16 conversion, validation table.
# Resumes where it stopped: run the same command again. The recipe is the best candidate so
# far (docs/history.md: refiner, pixel-size jitter 1,2, ETCI nebraska), not yet shipped; the
# shipped model's own recipe is this script at commit 8b26a45.
#
#   scripts/train_default_model.sh cpu       # the 2-core CPU profile (background it)
#   scripts/train_default_model.sh cuda      # one GPU, finishes within 10 minutes
#   scripts/train_default_model.sh smoke     # 3 iterations on a few tiles (tests)
#
# Environment: DATA (default ../shared/data beside the clone), WORK (default runs/default-model),
# CES (default .venv/bin/ces), INIT=previous|random (previous: the former default model
# ces-s1-water without a refiner, from git history, commit 8b26a45; random: a seeded random
# init), ITERS and LR to override the profile's iteration count and learning rate, WITHOUT
# (source names, space separated) to leave sources of the data list out, REFINER_ONLY=1 to train only a new
# mask refiner on the frozen previous model (--refiner-only; learning rate 1e-3, 3,000
# iterations on the CPU).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROFILE="${1:-cpu}"
USER_ITERS="${ITERS:-}"
USER_LR="${LR:-}"
DATA="$(cd "${DATA:-$ROOT/../shared/data}" && pwd)"
WORK="${WORK:-$ROOT/runs/default-model}"
CES="${CES:-$ROOT/.venv/bin/ces}"
PY="$(dirname "$CES")/python"
INIT="${INIT:-previous}"
HERE="$ROOT/scripts/default_model"
OUT_NAME=ces-s1-water.safetensors

# one stage, VV only (data.yaml says why), from the former default model, with a new
# full-resolution mask refiner (--refine) and pixel-size jitter: batches at 10 and 20 m (40 m
# batches of 64 px cost 0.9 mIoU on the calibrated chips, docs/history.md)
case "$PROFILE" in
  cpu)   ITERS=${ITERS:-2000}; BATCH=8;  LR=3e-4; WARMUP=40; SAVE=25;  WORKERS=0;  DEVICE=cpu ;;
  cuda)  ITERS=${ITERS:-1500}; BATCH=32; LR=4e-4; WARMUP=60; SAVE=100; WORKERS=12; DEVICE=cuda ;;
  smoke) ITERS=${ITERS:-3};    BATCH=2;  LR=1e-4; WARMUP=1;  SAVE=1;   WORKERS=0;  DEVICE=cpu ;;
  *) echo "train_default_model.sh: error: profile '$PROFILE' is not one of cpu, cuda, smoke" >&2; exit 2 ;;
esac
[ -n "$USER_LR" ] && LR="$USER_LR"
REFINER_ONLY="${REFINER_ONLY:-0}"
TRAINABLE=()
if [ "$REFINER_ONLY" = 1 ]; then   # 5,410 parameters on a frozen model: a larger step, more steps
  TRAINABLE=(--refiner-only); LR=${USER_LR:-1e-3}
  [ "$PROFILE" = cpu ] && ITERS=${USER_ITERS:-3000}
fi
mkdir -p "$WORK"

# 1. the data list, with DATA's absolute paths
sed "s#\.\./\.\./\.\./shared/data#$DATA#g; s#classes: etci_classes.yaml#classes: $HERE/etci_classes.yaml#" \
    "$HERE/data.yaml" > "$WORK/data.yaml"
for source in ${WITHOUT:-}; do   # leave sources out by name: the list entry and its lines
  "$PY" - "$WORK/data.yaml" "$source" <<'PYEOF'
import sys, re
path, name = sys.argv[1:]
text = open(path).read()
kept = re.sub(rf"\n  - name: {re.escape(name)}\b.*?(?=\n  - name: |\n[^ \n]|\Z)", "", text, flags=re.S)
if kept == text:
    sys.exit(f"train_default_model.sh: error: WITHOUT names '{name}', which is not a source of the data list")
open(path, "w").write(kept)
PYEOF
done
if [ "$PROFILE" = smoke ]; then   # two tiny sources: 4 OMBRIA tiles (VV), 4 ETCI tiles (VV)
  mkdir -p "$WORK/smoke"/{oi,om,ei,el}
  for f in $(ls "$DATA/ombria/train/AFTER" | head -4); do
    cp "$DATA/ombria/train/AFTER/$f" "$WORK/smoke/oi/"; cp "$DATA/ombria/train/MASK/${f/after/mask}" "$WORK/smoke/om/"; done
  for f in $(ls "$DATA/etci2021/bangladesh/images" | sed -n 8,11p); do
    cp "$DATA/etci2021/bangladesh/images/$f" "$WORK/smoke/ei/"; cp "$DATA/etci2021/bangladesh/labels/$f" "$WORK/smoke/el/"; done
  sed -i "s#$DATA/ombria/train/AFTER#$WORK/smoke/oi#; s#$DATA/ombria/train/MASK#$WORK/smoke/om#;
          s#$DATA/etci2021/[a-z]*/images#$WORK/smoke/ei#; s#$DATA/etci2021/[a-z]*/labels#$WORK/smoke/el#" "$WORK/data.yaml"
fi

# 2. the initialization
if [ ! -f "$WORK/init.safetensors" ]; then
  if [ "$INIT" = previous ] && git -C "$ROOT" cat-file -e 8b26a45:models/ces-s1-water.safetensors 2>/dev/null; then
    git -C "$ROOT" show 8b26a45:models/ces-s1-water.safetensors > "$WORK/init.tmp"
    mv "$WORK/init.tmp" "$WORK/init.safetensors"
  else
    [ "$INIT" = previous ] && echo "train_default_model.sh: the previous model is not in this clone's history; random init" >&2
    "$PY" "$ROOT/scripts/make_ces_ti_water_init.py" "$WORK/init.safetensors" 0
  fi
fi

# 3. training (continued pre-training: everything trainable), resumable
TRAINED="$WORK/trained.safetensors"
if [ ! -f "$TRAINED" ]; then
  RESUME=()
  [ -f "$WORK/trained.ckpt/last.safetensors" ] && RESUME=(--resume)
  "$CES" pretrain --model "$WORK/init.safetensors" --data "$WORK/data.yaml" --tile 256 \
      --batch "$BATCH" --iters "$ITERS" --lr "$LR" --warmup "$WARMUP" --schedule cosine \
      --grad-clip 1.0 --save-every "$SAVE" --workers "$WORKERS" --device "$DEVICE" --seed 0 \
      --refine "${TRAINABLE[@]}" --scale-jitter 1,2 --pixel-size 10 --progress none "${RESUME[@]}" -o "$TRAINED"
fi

# 4. fp16
"$CES" models convert "$TRAINED" --dtype fp16 -o "$WORK/$OUT_NAME" --overwrite

# 5. validation: OMBRIA test, the 15 calibrated chips at 10 and 20 m (Sen1Floods11 events, Spain and
#    c2smsfloods; never trained on), threshold baselines on the same pixels, dry ground
[ "$PROFILE" = smoke ] && { echo "smoke: wrote $WORK/$OUT_NAME"; exit 0; }
"$PY" "$ROOT/scripts/default_model/validate.py" --model "$WORK/$OUT_NAME" --data "$DATA" --work "$WORK" --ces "$CES"
