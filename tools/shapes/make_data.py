#!/usr/bin/env python3
"""Render the synthetic shapes data set (see world.py) for tools/shapes/train.py.

Writes OUT/clips.npy (uint8 [N, F, H, W, 3]) and OUT/clips.json (per clip: shape, colour, background, motion,
English and Chinese captions), for every training combination times --variants random sizes, positions and
speeds; and tools/shapes/eval_prompts.tsv: the held-out combinations (never rendered for training) as the
prompt list of `wan eval` and eval_ref.py, one English and one Chinese prompt each, with a seed.

Usage: tools/ref/.venv/bin/python tools/shapes/make_data.py [--out build/shapes] [--variants 8]
Deterministic: every clip draws from random.Random(SEED_RENDER + index).
"""

import argparse
import json
import os
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SEED_RENDER = 7000
# generation settings of `wan eval` and eval_ref.py (written into eval_prompts.tsv)
EVAL_SETTINGS = {"steps": 20, "cfg": 5.0, "cfg2": 5.0}  # plus the clip size and frame count of world.py


def write_eval_prompts(path, heldout):
    lines = [
        "# Held-out prompts of the shapes world (tools/shapes/make_data.py): combinations never trained on.",
        "# `colour NAME R G B` lines are the probe's palette; `prompt` lines are tab-separated:",
        "# prompt<TAB>LANG<TAB>SEED<TAB>SHAPE<TAB>COLOUR<TAB>BACKGROUND<TAB>MOTION<TAB>TEXT",
        "# `setting` lines are the generation defaults (the negative prompt is always empty).",
    ]
    settings = {"size": f"{world.WIDTH}x{world.HEIGHT}", "frames": world.FRAMES, **EVAL_SETTINGS}
    for k, v in settings.items():
        lines.append(f"setting\t{k}\t{v}")
    for name, (r, g, b) in world.PALETTE.items():
        lines.append(f"colour\t{name}\t{r}\t{g}\t{b}")
    seed = 0
    for lang in ("en", "zh"):
        for combo in heldout:
            lines.append("\t".join(["prompt", lang, str(seed), *combo, world.caption(lang, *combo)]))
            seed += 1
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "shapes"))
    ap.add_argument("--variants", type=int, default=8)
    ap.add_argument("--prompts", default=os.path.join(HERE, "eval_prompts.tsv"))
    ap.add_argument("--radius", default=None, help="LO,HI: the shapes' half-size range (default %s)" % (world.RADIUS,))
    ap.add_argument("--travel", default=None, help="LO,HI: a moving shape's displacement range (default %s)"
                    % (world.TRAVEL,))
    ap.add_argument("--frames", type=int, default=None, help="frames per clip, 4k+1 (default %d)" % world.FRAMES)
    ap.add_argument("--trail", default=None, help="BACK:ALPHA,...: faint copies behind a moving shape (default none)")
    ap.add_argument("--prompts-only", action="store_true", help="only write the prompt list")
    args = ap.parse_args()

    if args.radius:
        world.RADIUS = tuple(float(v) for v in args.radius.split(","))
    if args.travel:
        world.TRAVEL = tuple(float(v) for v in args.travel.split(","))
    if args.frames:
        if args.frames % 4 != 1:
            ap.error("--frames must be 4k+1 (the VAE's temporal compression)")
        world.FRAMES = args.frames
    if args.trail:
        world.TRAIL = tuple(tuple(float(v) for v in part.split(":")) for part in args.trail.split(","))
    t0 = time.time()
    train, heldout = world.split_combos()
    if args.prompts_only:
        write_eval_prompts(args.prompts, heldout)
        return
    os.makedirs(args.out, exist_ok=True)
    n = len(train) * args.variants
    clips = np.empty((n, world.FRAMES, world.HEIGHT, world.WIDTH, 3), np.uint8)
    meta = []
    for i in range(n):
        combo = train[i % len(train)]
        clips[i] = world.render(*combo, random.Random(SEED_RENDER + i))
        s, c, b, m = combo
        meta.append({"shape": s, "colour": c, "background": b, "motion": m,
                     "en": world.caption("en", *combo), "zh": world.caption("zh", *combo)})
    np.save(os.path.join(args.out, "clips.npy"), clips)
    with open(os.path.join(args.out, "clips.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False)
    write_eval_prompts(args.prompts, heldout)
    print(f"[data] {n} clips ({len(train)} combinations x {args.variants}) -> {args.out}; "
          f"{len(heldout)} held-out combinations x 2 languages -> {os.path.relpath(args.prompts, ROOT)}; "
          f"{time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
