#!/bin/sh
# Rebuilds the shipped models/wan-tiny-shapes (issue 10: it follows motion words) from the model committed before
# it: three anchored resumes of tools/shapes/train.py, as in tools/shapes/README.md (Training, step 6):
#
#   train.py --resume PREV --load-vae build/shapes/vae --base-steps N --expert-steps 400 \
#            --frame-noise 0.5 --anchor 0.5 --threads 2 --out NEXT          N = 3000, then 2000, then 2000
#
# The first PREV is models/wan-tiny-shapes as committed at PIN below (taken with `git archive`, so the script keeps
# working after the folder is replaced); the last NEXT is copied to OUT.
#
# Usage: tools/shapes/anchor_chain.sh OUT [WORK]          (both relative to the current directory)
#   OUT   the finished model folder (replaced)
#   WORK  intermediate models and one train.py log per stage (default: the repository's build/anchor_chain; replaced)
# Environment (paths relative to the repository root):
#   DATA=build/shapes      clips of make_data.py (rendered here if DATA/clips.npy is missing)
#   VAE=DATA/vae           float32 VAE + latents.pt of the first model's training (train.py --save-vae); if
#                          missing, trained here with train.py --only-vae --save-vae on one thread (~9 min CPU;
#                          this gave the first model's VAE and latents byte for byte);
#                          either way its weights rounded to bfloat16 must equal the pinned model's VAE
#   BASE_STEPS="3000 2000 2000"  anchored base steps of each stage (one stage per number)
#   EXPERT_STEPS=400       steps of each expert per stage
#   THREADS=2              torch threads (the results depend on the count: 2 reproduces the shipped model)
#   PY=tools/ref/.venv/bin/python
# A full run takes about 58 CPU-min (29 min wall on 2 threads) and gives the shipped model byte for byte (checked
# in the fifth session). For a quick end-to-end check of the script:
#   BASE_STEPS="5 5 5" EXPERT_STEPS=5 tools/shapes/anchor_chain.sh /tmp/chain-check
set -eu

PIN=36338a071e065dd876fe2da590b661dafdcc4050   # its models/wan-tiny-shapes = 2cfa9c1's (bf16 VAE, motion 0.17)

if [ $# -lt 1 ] || [ $# -gt 2 ]; then sed -n '2,/^set/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
OUT=$(abs "$1")
WORK=$(abs "${2:-$ROOT/build/anchor_chain}")
cd "$ROOT"
DATA=${DATA:-build/shapes}
VAE=${VAE:-$DATA/vae}
BASE_STEPS=${BASE_STEPS:-3000 2000 2000}
EXPERT_STEPS=${EXPERT_STEPS:-400}
THREADS=${THREADS:-2}
PY=${PY:-tools/ref/.venv/bin/python}

git cat-file -e "$PIN^{commit}" 2>/dev/null || { echo "anchor_chain: commit $PIN is not in this repository" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK"

if [ ! -f "$DATA/clips.npy" ]; then
    echo "anchor_chain: rendering the clips into $DATA"
    "$PY" tools/shapes/make_data.py --out "$DATA" --prompts "$WORK/eval_prompts.tsv" >"$WORK/make_data.log" 2>&1 ||
        { tail -20 "$WORK/make_data.log" >&2; exit 1; }
fi
if [ ! -f "$VAE/latents.pt" ]; then
    echo "anchor_chain: training the VAE into $VAE (one thread, as the committed model's)"
    "$PY" tools/shapes/train.py --data "$DATA" --only-vae --save-vae "$VAE" --threads 1 >"$WORK/vae.log" 2>&1 ||
        { tail -20 "$WORK/vae.log" >&2; exit 1; }
fi

echo "anchor_chain: start model: models/wan-tiny-shapes at $PIN"
mkdir -p "$WORK/start"
git archive "$PIN" models/wan-tiny-shapes | tar -x -C "$WORK/start"
prev=$WORK/start/models/wan-tiny-shapes

# The VAE is not trained by the chain: the model keeps the pinned one. Check that $VAE is it.
"$PY" - "$VAE/diffusion_pytorch_model.safetensors" "$prev/vae/diffusion_pytorch_model.safetensors" <<'PYEOF'
import sys
import torch
from safetensors.torch import load_file
got, want = load_file(sys.argv[1]), load_file(sys.argv[2])
bad = [k for k in want if k not in got or not torch.equal(got[k].to(torch.bfloat16), want[k])]
if bad or len(got) != len(want):
    sys.exit(f"anchor_chain: {sys.argv[1]} is not the pinned model's VAE ({len(bad)} of {len(want)} tensors differ)")
print(f"anchor_chain: VAE checked: {len(want)} tensors, equal to the pinned model's in bfloat16")
PYEOF

i=0
for n in $BASE_STEPS; do
    i=$((i + 1))
    echo "anchor_chain: stage $i: --resume ${prev#"$ROOT"/} --base-steps $n --expert-steps $EXPERT_STEPS -> $WORK/stage$i"
    "$PY" tools/shapes/train.py --data "$DATA" --resume "$prev" --load-vae "$VAE" --base-steps "$n" \
        --expert-steps "$EXPERT_STEPS" --frame-noise 0.5 --anchor 0.5 --threads "$THREADS" --out "$WORK/stage$i" \
        >"$WORK/stage$i.log" 2>&1 || { tail -20 "$WORK/stage$i.log" >&2; exit 1; }
    grep '^\[time\] total' "$WORK/stage$i.log" || :
    prev=$WORK/stage$i
done
[ $i -gt 0 ] || { echo "anchor_chain: BASE_STEPS is empty" >&2; exit 2; }

rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
cp -r "$prev" "$OUT"
# train.py records where it loaded the VAE from; the shipped config does not name a build folder
"$PY" - "$OUT/vae/config.json" <<'PYEOF'
import json, sys
with open(sys.argv[1]) as f:
    cfg = json.load(f)
cfg.pop("_name_or_path", None)
with open(sys.argv[1], "w") as f:
    json.dump(cfg, f, indent=2, sort_keys=True)
    f.write("\n")
PYEOF
echo "anchor_chain: wrote $OUT (logs in $WORK)"
