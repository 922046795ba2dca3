#!/usr/bin/env python3
"""The Python twin of `wan eval`: diffusers' WanPipeline on the same prompt list, seeds and settings, scored with
the same probe (world.probe), printing the same accuracy table.

With --c-frames DIR (the folder written by `wan eval --save DIR`) it also compares the engine's frames with the
pipeline's, prompt by prompt: the largest pixel difference and whether the probe reads the same attributes.

Usage: tools/ref/.venv/bin/python tools/shapes/eval_ref.py --model models/wan-tiny-shapes
           [--prompts FILE] [--limit N] [--lang en|zh] [--c-frames DIR] [--save DIR]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402

ATTRS = ["colour", "background", "motion", "shape", "all"]
KEYS = ["shape", "colour", "background", "motion"]  # file order of the expected values


def load_list(path):
    settings, colours, prompts = {}, {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            fld = line.split("\t")
            if fld[0] == "setting":
                settings[fld[1]] = fld[2]
            elif fld[0] == "colour":
                colours[fld[1]] = tuple(int(v) for v in fld[2:5])
            elif fld[0] == "prompt":
                prompts.append({"lang": fld[1], "seed": int(fld[2]), "want": dict(zip(KEYS, fld[3:7])),
                                "text": fld[7]})
    assert colours == world.PALETTE, "the list's palette differs from world.PALETTE"
    return settings, prompts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", default=None)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--lang", default=None)
    ap.add_argument("--c-frames", default=None)
    ap.add_argument("--save", default=None, help="write each video's frames as DIR/NNN.safetensors (U8 [F,H,W,3])")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from diffusers import WanPipeline
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    settings, prompts = load_list(args.prompts or os.path.join(args.model, "eval_prompts.tsv"))
    W, H = (int(v) for v in settings["size"].split("x"))
    frames, steps = int(settings["frames"]), int(settings["steps"])
    cfg, cfg2 = float(settings["cfg"]), float(settings["cfg2"])
    pipe = WanPipeline.from_pretrained(args.model, torch_dtype=torch.float32)  # the VAE is stored in bf16
    pipe.set_progress_bar_config(disable=True)
    print(f"eval_ref: {args.model}, {W}x{H}, {frames} frames, {steps} steps, CFG {cfg:g}/{cfg2:g}, empty negative prompt")

    tally, seen = {}, {}
    n_cmp = n_same = 0
    max_diff = 0
    t0 = time.time()
    for i, p in enumerate(prompts):
        if args.lang and p["lang"] != args.lang:
            continue
        if args.limit and seen.get(p["lang"], 0) >= args.limit:
            continue
        seen[p["lang"]] = seen.get(p["lang"], 0) + 1
        out = pipe(prompt=p["text"], negative_prompt="", height=H, width=W, num_frames=frames,
                   num_inference_steps=steps, guidance_scale=cfg, guidance_scale_2=cfg2,
                   generator=torch.Generator("cpu").manual_seed(p["seed"]), output_type="np").frames[0]
        video = (out * 255).astype(np.uint8)  # truncation, as export_to_video and wan.c's frames
        got = world.probe(video)
        if args.save:
            from safetensors.numpy import save_file

            os.makedirs(args.save, exist_ok=True)
            save_file({"frames": np.ascontiguousarray(video)}, os.path.join(args.save, f"{i:03d}.safetensors"))
        ok = {a: got[a] == p["want"][a] for a in KEYS}
        t = tally.setdefault(p["lang"], {a: 0 for a in ATTRS + ["n"]})
        t["n"] += 1
        for a in KEYS:
            t[a] += ok[a]
        t["all"] += all(ok.values())
        line = (f"{i:3d} {p['lang']} seed {p['seed']:<4d} {'C' if ok['colour'] else 'c'} "
                f"{'B' if ok['background'] else 'b'} {'M' if ok['motion'] else 'm'} {'S' if ok['shape'] else 's'}  "
                f"{p['text']} -> {got['colour'] or '?'} {got['shape'] or '?'} on {got['background'] or '?'}, "
                f"{got['motion'] or '?'}")
        if args.c_frames:
            from safetensors.numpy import load_file

            c = load_file(os.path.join(args.c_frames, f"{i:03d}.safetensors"))["frames"]
            d = int(np.abs(c.astype(np.int16) - video.astype(np.int16)).max())
            same = world.probe(c) == got
            max_diff = max(max_diff, d)
            n_cmp += 1
            n_same += same
            line += f"   | wan.c: max |diff| {d}, probe {'same' if same else 'DIFFERENT'}"
        print(line, flush=True)

    print("\naccuracy      colour  background  motion  shape   all")
    total = {a: 0 for a in ATTRS + ["n"]}
    for lang, t in tally.items():
        print(f"{lang + ' (' + str(t['n']) + ')':<13}" + "".join(
            f" {t[a] / t['n']:<7.3f}" + ("    " if a == "background" else "") for a in ATTRS).rstrip())
        for a in total:
            total[a] += t[a]
    if len(tally) > 1:
        print(f"{'all (' + str(total['n']) + ')':<13}" + "".join(
            f" {total[a] / total['n']:<7.3f}" + ("    " if a == "background" else "") for a in ATTRS).rstrip())
    print(f"{total['n']} videos in {time.time() - t0:.1f} s")
    if args.c_frames:
        print(f"wan.c vs WanPipeline: {n_cmp} videos, largest pixel difference {max_diff}, "
              f"probe identical on {n_same}/{n_cmp}")


if __name__ == "__main__":
    main()
