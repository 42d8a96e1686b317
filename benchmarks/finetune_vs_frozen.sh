#!/bin/bash
# The study's Approach 1 against the approach this tool is built on, on ../shared/data:
#   fine-tuned:  effnet-lite0 trained end to end (`deepfake finetune`, the study's settings: SGD, lr 1e-5,
#                momentum 0.9, batch 128, 256x256, blur+jitter, best epoch by validation accuracy), except
#                the number of epochs (EPOCHS, default 10; the study used 80);
#   frozen:      effnet-lite0 features (last layer) + LDA and SVM (`extract` + `train`).
# Both train on TRAIN_SETS (default cifake_sd14) with the same held-out split (--test-size 0.2 --seed 0:
# identical held-out images) and are scored within the training set and across every other set. Prints
# the two eval tables and one accuracy matrix with all three models.
#
# Run time on the 2-core, 23 GB development machine (CPU only): about 7 min per epoch of effnet-lite0 at
# 256x256 on cifake_sd14's 1280 fit + 320 validation images (one epoch measured: 796 s of CPU time,
# 40 min wall on a machine shared with load 10-15), so with EPOCHS=10 about 75-80 min in all (the two
# extractions of the ~2800 images take ~5 min, train and eval ~1 min); the study's 80 epochs ~9.5 h.
# A CUDA GPU makes an epoch take seconds. On CPU, MICRO (default 32) splits each batch of 128 into
# chunks whose gradients add up (batch 128 at once needs ~15 GB of memory); with a GPU set MICRO=128.
# Resumable: rerun the same command after an interruption (fine-tuning resumes from its checkpoint,
# extraction from its shards). Variables: EPOCHS, DEVICE (auto|cpu|cuda), OUT, SHARED_DATA, BATCH, MICRO.
set -euo pipefail
cd "$(dirname "$0")/.."
DF=${DEEPFAKE:-.venv/bin/deepfake}
D=${SHARED_DATA:-../shared/data}
O=${OUT:-runs/finetune_vs_frozen}
EPOCHS=${EPOCHS:-10}
DEVICE=${DEVICE:-auto}
BATCH=${BATCH:-128}
MICRO=${MICRO:-32}
TRAIN_SETS="cifake=$D/cifake_sd14"
TEST_SETS="biggan=$D/forensynths_biggan stylegan=$D/forensynths_stylegan cyclegan=$D/forensynths_cyclegan \
gaugan=$D/forensynths_gaugan grip=$D/grip_gan_examples ldm=$D/imagenet_vs_ldm"
mkdir -p "$O/frozen" "$O/finetuned"
t() { local s; s=$(date +%s); "$@"; echo "[$(( $(date +%s) - s )) s] ${*:1:2}" >&2; }

# frozen backbone + classical classifiers
t $DF extract $TRAIN_SETS $TEST_SETS --backbone effnet-lite0 --device "$DEVICE" --out "$O/frozen/feats.h5" -q
t $DF train "$O/frozen/feats.h5" --classifier lda,svm --datasets cifake --test-size 0.2 --seed 0 \
    --out "$O/frozen/models"

# Approach 1: fine-tune, then the fine-tuned network's features of every set (same file, appended)
t $DF finetune $TRAIN_SETS --arch effnet-lite0 --epochs "$EPOCHS" --batch-size "$BATCH" --micro-batch "$MICRO" --test-size 0.2 --seed 0 \
    --device "$DEVICE" --out "$O/finetuned/effnet-lite0.model" --features-out "$O/finetuned/feats.h5"
t $DF extract $TEST_SETS --backbone "finetuned:$O/finetuned/effnet-lite0.safetensors" --device "$DEVICE" \
    --out "$O/finetuned/feats.h5" -q

# eval refuses a model on features of another backbone, so each family is scored on its own file
t $DF eval "$O/frozen/models" --features "$O/frozen/feats.h5" --out "$O/eval_frozen"
t $DF eval "$O/finetuned/effnet-lite0.model" --features "$O/finetuned/feats.h5" --out "$O/eval_finetuned"

.venv/bin/python - "$O/eval_frozen/eval.csv" "$O/eval_finetuned/eval.csv" <<'EOF'
import csv, sys
rows = [r for f in sys.argv[1:] for r in csv.DictReader(open(f))]
sets = list(dict.fromkeys(r["test_dataset"] for r in rows))
models = list(dict.fromkeys(f"{r['model']} ({r['classifier']})" for r in rows))
cell = {(f"{r['model']} ({r['classifier']})", r["test_dataset"]): r for r in rows}
print("\naccuracy at the validation threshold (* = within the training set, held-out images; n in brackets)")
print("| model | " + " | ".join(sets) + " |")
print("|---|" + "---|" * len(sets))
for m in models:
    cells = []
    for s in sets:
        r = cell.get((m, s))
        cells.append("-" if r is None else f"{float(r['accuracy']):.3f}{'*' if r['kind'] == 'within' else ''} ({r['n']})")
    print(f"| {m} | " + " | ".join(cells) + " |")
EOF
