#!/usr/bin/env python3
"""How much a shapes model uses each word of its captions: the flow-matching loss of its experts on training clips
under the true caption, and under the caption with one attribute swapped (motion to the opposite direction, object
colour, shape), or with the empty prompt. A word the model follows raises the loss when it is swapped; a word it
ignores leaves the loss where it was.

Usage: tools/ref/.venv/bin/python tools/shapes/caption_gap.py --model DIR --data DIR [--vae DIR] [--clips 32]
  --data  the make_data.py folder the model was trained on (clips.npy, clips.json)
  --vae   a folder with latents.pt (train.py --save-vae) to skip encoding the clips again
Prints one line per noise level (the high-noise expert above the boundary, the low-noise one below).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import train as T  # noqa: E402
import world  # noqa: E402

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
NEXT_SHAPE = {"circle": "square", "square": "triangle", "triangle": "circle"}


def swapped(cap, what):
    c = dict(cap)
    if what == "motion":
        c["motion"] = OPPOSITE[c["motion"]]
    elif what == "shape":
        c["shape"] = NEXT_SHAPE[c["shape"]]
    else:  # another object colour that is not the background
        c["colour"] = [k for k in world.OBJECT_COLOURS if k not in (c["colour"], c["background"])][0]
    return world.caption("en", c["shape"], c["colour"], c["background"], c["motion"])


def main():
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--vae", default=None)
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    clips = np.load(os.path.join(args.data, "clips.npy"), mmap_mode="r")
    with open(os.path.join(args.data, "clips.json"), encoding="utf-8") as f:
        caps = json.load(f)
    rng = np.random.default_rng(1)
    idx = [int(i) for i in np.sort(rng.choice(len(clips), 2 * args.clips, replace=False))
           if caps[i]["motion"] != "still"][:args.clips]
    vae = AutoencoderKLWan.from_pretrained(os.path.join(args.model, "vae"))
    with torch.no_grad():
        if args.vae:
            mu = torch.load(os.path.join(args.vae, "latents.pt"))[idx]
        else:
            mu = vae.encode(T.to_video(clips[idx])).latent_dist.mean
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    x0 = (mu - mean) / std
    te = UMT5EncoderModel.from_pretrained(os.path.join(args.model, "text_encoder"))
    tok = T.Tokens(os.path.join(args.model, "tokenizer"))
    experts = [WanTransformer3DModel.from_pretrained(os.path.join(args.model, d)) for d in ("transformer", "transformer_2")]
    for m in experts:
        T.use_compressed_attention(m, True)
    B = len(idx)
    variants = [("true", [caps[i]["en"] for i in idx])]
    variants += [(f"{w}-swapped", [swapped(caps[i], w) for i in idx]) for w in ("motion", "colour", "shape")]
    variants += [("empty", [""] * B)]
    gen = torch.Generator().manual_seed(0)
    print(f"flow-matching loss of {B} moving training clips (English captions) per caption variant")
    for sigma in (0.97, 0.92, 0.85, 0.7, 0.5, 0.3):
        model = experts[0] if sigma >= T.BOUNDARY else experts[1]
        noise = torch.randn(x0.shape, generator=gen)
        xt = (1 - sigma) * x0 + sigma * noise
        row = []
        for name, prompts in variants:
            ids, mask = T.batch_ids(tok, prompts)
            with torch.no_grad():
                emb = te(ids, mask).last_hidden_state
                pred = T.dit_forward(model, xt, torch.full((B,), sigma * 1000.0), emb, mask)
            row.append(f"{name} {((pred - (noise - x0)) ** 2).mean().item():.4f}")
        print(f"sigma {sigma:.2f} ({'high' if sigma >= T.BOUNDARY else 'low'}): " + "  ".join(row), flush=True)


if __name__ == "__main__":
    main()
