#!/usr/bin/env python3
"""The smallest test of whether the Wan DiT learns a motion word: no VAE, no colours, no shapes. Latents [16, T, 8, 8]
hold one 2x2 blob (a fixed random 16-channel vector) that moves one latent pixel per latent frame to the left,
right, up or down from a random start; the caption is the motion phrase alone ("moves to the right", ...). A fresh
WanTransformer3DModel (train.py's DIT_CFG) and umT5 encoder (TEXT_CFG, the committed model's tokenizer) are trained
with train.py's flow matching; every 250 steps it prints, per noise level, the loss of 64 clips under the true
phrase and under the opposite one. A model that uses the phrase has a lower loss under the true one.

Usage: tools/ref/.venv/bin/python tools/shapes/toy_motion.py [--frames 5] [--rounds 6] [--threads 2] [--ramp A]
       [--clock A] [--coded] [--frame-noise F [--anchor A]] [--steps N] [--directions right,...]
       [--warm-directions D --warm-rounds N] [--coded-rounds N] [--patch t,h,w]
Result (experiments/toy_motion.log): after 1500 steps the two losses agree to 4 decimals at every noise level; the
same with --ramp 1.5 (a backdrop that shows absolute position); with --coded (a blob vector per direction) the
phrase is used within 250 steps. One direction alone (--directions right) is learned in about 1000 steps; four are
not, whether the phrase or frame 0 tells them apart, and the curricula (--warm-*, --coded-rounds) do not help.
With one schedule (--steps) four are learned after ~3500 steps, from x_t alone. With --anchor (frame 0 clean, the
others pure noise, where only the phrase tells the direction) the phrase is used, and clips generated from pure
noise follow it in 0.59 of 32 after 4000 steps (chance 0.25).
"""

import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import train as T  # noqa: E402
import world  # noqa: E402

STEP = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def make_clips(n, frames, seed=0, ramp=0.0, coded=False, clock=0.0, dirs=tuple(STEP), blobs=None):
    rng = np.random.default_rng(seed)
    vec = torch.from_numpy(rng.standard_normal(16).astype(np.float32)) * 2.0
    x0 = torch.zeros(n, 16, frames, 8, 8)
    # coded: each direction's blob has its own vector (the word then acts like a colour word: a control)
    vecs = {d: torch.from_numpy(rng.standard_normal(16).astype(np.float32)) * 2.0 if coded else vec for d in STEP}
    vecs = blobs or vecs  # another clip set's blob vectors (the draws above still advance rng)
    if ramp:  # a fixed backdrop that tells position: channel 0 rises left to right, channel 1 top to bottom
        lin = torch.linspace(-ramp, ramp, 8)
        x0[:, 0] += lin.view(1, 1, 8)
        x0[:, 1] += lin.view(1, 8, 1)
    if clock:  # a backdrop that tells the time: channel 2 rises from the first frame to the last
        x0[:, 2] += torch.linspace(-clock, clock, frames).view(1, frames, 1, 1)
    caps = []
    for i in range(n):
        d = dirs[i % len(dirs)]
        dy, dx = STEP[d]
        span = frames - 1
        y = rng.integers(max(0, -dy * span), 7 - max(0, dy * span))
        x = rng.integers(max(0, -dx * span), 7 - max(0, dx * span))
        for t in range(frames):
            x0[i, :, t, y + dy * t:y + dy * t + 2, x + dx * t:x + dx * t + 2] += vecs[d][:, None, None]
        caps.append({"en": world.EN_MOTION[d], "zh": world.ZH_MOTION[d], "motion": d})
    return x0, caps, vecs


def phrase_pair(model, te, tok, caps, idx, xt, t, target, frames=slice(None)):
    """Loss over `frames` of the prediction for xt under the true and under the opposite motion phrase."""
    pair = []
    for words in ([caps[i]["motion"] for i in idx], [OPPOSITE[caps[i]["motion"]] for i in idx]):
        ids, mask = T.batch_ids(tok, [world.EN_MOTION[w] for w in words])
        with torch.no_grad():
            pred = T.dit_forward(model, xt, t, te(ids, mask).last_hidden_state, mask)
        pair.append(((pred - target)[:, :, frames] ** 2).mean().item())
    return f"{pair[0]:.4f} / {pair[1]:.4f}"


def sample_accuracy(model, te, tok, vec, frames, n=32, steps=20, cfg=5.0, seed=0):
    """Generates n clips from pure noise as the pipeline does (one noise level for all frames, Euler steps on the
    shifted flow schedule, CFG against the empty caption), n/4 per direction, and reads each clip's direction from
    where the blob is (the 2x2 window with the largest projection on the blob vector) in its first and last frame.
    Returns the fraction that moves the way the phrase says (0.25 is chance)."""
    T.use_compressed_attention(model, True)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    dirs = [list(STEP)[i % 4] for i in range(n)]
    x = torch.randn(n, 16, frames, 8, 8, generator=gen)
    u = torch.linspace(1.0, 0.0, steps + 1)
    sig = T.FLOW_SHIFT * u / (1 + (T.FLOW_SHIFT - 1) * u)
    with torch.no_grad():
        ids, mask = T.batch_ids(tok, [world.EN_MOTION[d] for d in dirs])
        cond = te(ids, mask).last_hidden_state
        ids0, mask0 = T.batch_ids(tok, [""] * n)
        unc = te(ids0, mask0).last_hidden_state
        for i in range(steps):
            t = torch.full((n,), float(sig[i]) * 1000.0)
            vc = T.dit_forward(model, x, t, cond, mask)
            vu = T.dit_forward(model, x, t, unc, mask0)
            x = x + (sig[i + 1] - sig[i]) * (vu + cfg * (vc - vu))
    return sum(int(got == d) for got, d in zip(read_directions(x, vec), dirs)) / n


def read_directions(x, vec):
    """The direction each clip of x [N, 16, F, 8, 8] moves: where the 2x2 window with the largest projection on the
    blob vector is in the first and in the last frame ("still" when it is in the same place)."""
    proj = torch.einsum("nctyx,c->ntyx", x, vec / vec.dot(vec))
    win = proj[..., :-1, :-1] + proj[..., 1:, :-1] + proj[..., :-1, 1:] + proj[..., 1:, 1:]
    flat = win.flatten(2).argmax(dim=2)
    ys, xs = flat // 7, flat % 7
    out = []
    for k in range(x.shape[0]):
        dy, dx = int(ys[k, -1] - ys[k, 0]), int(xs[k, -1] - xs[k, 0])
        if dy == 0 and dx == 0:
            out.append("still")
        else:
            out.append(("down" if dy > 0 else "up") if abs(dy) > abs(dx) else ("right" if dx > 0 else "left"))
    return out


def losses(model, te, tok, x0, caps, idx):
    T.use_compressed_attention(model, True)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    out = []
    for sigma in (0.95, 0.85, 0.7, 0.5):
        noise = torch.randn(x0[idx].shape, generator=gen)
        xt = (1 - sigma) * x0[idx] + sigma * noise
        t = torch.full((len(idx),), sigma * 1000.0)
        out.append(f"sigma {sigma}: " + phrase_pair(model, te, tok, caps, idx, xt, t, noise - x0[idx]))
    # first frame nearly clean (sigma 0.2), the others at 0.95: where the object goes must come from the phrase
    nf = x0.shape[2]
    per = torch.full((len(idx), nf), 0.95)
    per[:, 0] = 0.2
    noise = torch.randn(x0[idx].shape, generator=gen)
    s = per.view(len(idx), 1, nf, 1, 1)
    xt = (1 - s) * x0[idx] + s * noise
    t = T.frame_timesteps(model, per, x0)
    out.append("first frame clear: " + phrase_pair(model, te, tok, caps, idx, xt, t, noise - x0[idx], slice(1, None)))
    ids, mask = T.batch_ids(tok, [""] * len(idx))  # the motion can also come from what frame 0 shows (--coded)
    with torch.no_grad():
        pred = T.dit_forward(model, xt, t, te(ids, mask).last_hidden_state, mask)
    out.append(f"/ empty {((pred - noise + x0[idx])[:, :, 1:] ** 2).mean().item():.4f}")
    return "  ".join(out)


def main():
    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=5, help="latent frames per clip")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of 250 training steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ramp", type=float, default=0.0,
                    help="amplitude of a fixed backdrop that reveals absolute position (0: none)")
    ap.add_argument("--clock", type=float, default=0.0,
                    help="amplitude of a backdrop that changes from frame to frame and so tells the time (0: none)")
    ap.add_argument("--directions", default=",".join(STEP),
                    help="comma-separated directions the clips use (one alone: the motion needs no caption)")
    ap.add_argument("--warm-directions", default="",
                    help="curriculum: the first --warm-rounds rounds train on clips of these directions only")
    ap.add_argument("--warm-rounds", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0,
                    help="one schedule of this many steps (losses every 500) instead of --rounds restarts of 250")
    ap.add_argument("--patch", default="1,2,2", help="the transformer's patch size t,h,w")
    ap.add_argument("--coded", action="store_true", help="control: a different blob vector per direction")
    ap.add_argument("--coded-rounds", type=int, default=0,
                    help="curriculum: the first N rounds train on clips with a blob vector per direction, then one")
    ap.add_argument("--frame-noise", type=float, default=0.0,
                    help="fraction of training samples with an independent noise level per latent frame")
    ap.add_argument("--anchor", type=float, default=0.0,
                    help="with --frame-noise > 0: fraction of all samples with frame 0 nearly clean, the rest noise")
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "..", "..", "models", "wan-tiny-shapes", "tokenizer"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = T.Tokens(args.tokenizer)
    x0, caps, blobs = make_clips(4000, args.frames, ramp=args.ramp, coded=args.coded, clock=args.clock,
                                 dirs=tuple(args.directions.split(",")))
    te = UMT5EncoderModel(UMT5Config(vocab_size=384, **T.TEXT_CFG))
    model = WanTransformer3DModel(**{**T.DIT_CFG, "patch_size": [int(v) for v in args.patch.split(",")]})
    idx = list(range(64))
    if args.coded_rounds:
        cx0, ccaps, _ = make_clips(4000, args.frames, ramp=args.ramp, coded=True, clock=args.clock,
                                   dirs=tuple(args.directions.split(",")))
    if args.warm_rounds:
        wx0, wcaps, _ = make_clips(4000, args.frames, seed=1, ramp=args.ramp, coded=args.coded, clock=args.clock,
                                   dirs=tuple(args.warm_directions.split(",")), blobs=blobs)
    if args.steps:
        def report(step):
            print(f"after {step} steps, loss true / opposite phrase: " + losses(model, te, tok, x0, caps, idx),
                  flush=True)
            if step % 1000 == 0:
                acc = sample_accuracy(model, te, tok, blobs["right"], args.frames)
                print(f"after {step} steps, generated clips moving as the phrase says: {acc:.3f} (chance 0.25)",
                      flush=True)
        T.train_dit("toy", model, te, tok, x0, caps, args.steps, (0.0, 1.0), 70, 5e-4, True, batch=32,
                    frame_noise=args.frame_noise, every=500, callback=report, anchor=args.anchor)
        return
    for r in range(args.rounds):
        warm = r < args.warm_rounds
        data = (wx0, wcaps) if warm else (cx0, ccaps) if r < args.coded_rounds else (x0, caps)
        T.train_dit("toy", model, te, tok, *data, 250, (0.0, 1.0), 70 + r,
                    5e-4, True, batch=32, frame_noise=args.frame_noise)
        phase = " (warm-up)" if warm else " (coded)" if r < args.coded_rounds else ""
        print(f"after {250 * (r + 1)} steps{phase}, loss true / opposite phrase: "
              + losses(model, te, tok, x0, caps, idx), flush=True)


if __name__ == "__main__":
    main()
