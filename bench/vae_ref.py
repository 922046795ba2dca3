#!/usr/bin/env python3
"""PyTorch side of bench/vae.c: diffusers AutoencoderKLWan.decode on the CPU in fp32 with the weights and the
latent the C bench wrote (a folder with config.json + decoder-only diffusion_pytorch_model.safetensors, and
z.safetensors). The encoder is dropped after construction so that both sides hold the same weights.
Prints `RESULT seconds S cpu C peak_rss_mb M` (the C bench parses that line); --out writes the sample for the
C side to compare against.
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from diffusers import AutoencoderKLWan  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--z", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tiled", action="store_true")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--tile-stride", type=int, default=192)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    vae = AutoencoderKLWan(**cfg).eval()
    sd = load_file(os.path.join(a.model, "diffusion_pytorch_model.safetensors"))
    sd = {k: v.float() for k, v in sd.items()}
    missing, unexpected = vae.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith(("encoder.", "quant_conv.")) for k in missing), (missing, unexpected)
    del sd
    vae.encoder = None
    if a.tiled:
        vae.enable_tiling(a.tile, a.tile, a.tile_stride, a.tile_stride)
    z = load_file(a.z)["z"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, z {tuple(z.shape)}"
          f"{', tiled' if a.tiled else ''}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        out = vae.decode(z, return_dict=False)[0]
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if a.out:
        save_file({"sample": out.contiguous()}, a.out)
    print(f"RESULT seconds {dt:.3f} cpu {dc:.3f} peak_rss_mb {rss:.1f}", flush=True)


if __name__ == "__main__":
    main()
