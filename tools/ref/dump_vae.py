#!/usr/bin/env python3
"""Reference tensors for the C port of AutoencoderKLWan (vae.md, issue 5).

Loads the two committed tiny VAEs (never rebuilds them), runs diffusers' AutoencoderKLWan on the CPU in float32
and writes small safetensors files under tests/fixtures/vae/:

  tiny21.safetensors   TINY21 (tests/fixtures/tiny-wan22-t2v/vae, z 16)
  tiny22.safetensors   TINY22 (tests/fixtures/tiny-wan22-ti2v/vae, z 48, patch 2, residual blocks)

Each file holds
  z              [1, z, 5, 4, 6]   latent (already de-normalised: what vae.decode takes)
  sample         [1, 3, 17, H, W]  vae.decode(z) (clamped). The decoder is causal, so decode(z[:, :, :T]) equals
                                   sample[:, :, :1+4(T-1)]; the script checks this for T = 1, 2, 3 (max abs <= 1e-6),
                                   so one file covers T in {1, 2, 3, 5} at a fifth of the size.
  dbg/<stage>/<k> per-chunk outputs of decoder.conv_in, decoder.mid_block, decoder.up_blocks.N for chunks
                 k = 0, 1, 2 of that decode (frames on axis 2; raw, before unpatchify)
  tiled_z        [1, z, Tt, 7, 9]  latent for the tiled decode (Tt = 2 for TINY21, 1 for TINY22)
  tiled_sample   vae.decode(tiled_z) after enable_tiling(4s, 4s, 3s, 3s) with s = scale_factor_spatial,
                 i.e. latent tile 4, latent stride 3 (the arguments are sample pixels)
  x              [1, 3, F, H, W]   video in [-1, 1] (F = 9 for TINY21, 5 for TINY22)
  latent_mean    vae.encode(x).latent_dist.mean; causal as well: encode(x[:, :, :1+4k]) is its prefix (checked)

Usage:  tools/ref/.venv/bin/python tools/ref/dump_vae.py
"""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from diffusers import AutoencoderKLWan  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "vae")
SEED_Z = 100
SEED_TILED = 200
SEED_X = 300

CASES = [
    # name, folder, debug stages kept (the larger up blocks are left out to keep the files small), tiled T, video F
    ("tiny21", "tiny-wan22-t2v/vae", ["conv_in", "mid_block", "up_blocks.0", "up_blocks.1"], 2, 9),
    ("tiny22", "tiny-wan22-ti2v/vae", ["conv_in", "mid_block", "up_blocks.0"], 1, 5),
]


def decode_with_hooks(vae, z, stages):
    caps = {}
    hooks = []

    def grab(name):
        def hook(_mod, _inp, out):
            k = sum(1 for key in caps if key.startswith(f"dbg/{name}/"))
            if k < 3:
                caps[f"dbg/{name}/{k}"] = out.detach().float().contiguous()
        return hook

    for s in stages:
        mod = vae.decoder.get_submodule(s)
        hooks.append(mod.register_forward_hook(grab(s)))
    with torch.no_grad():
        out = vae.decode(z, return_dict=False)[0]
    for h in hooks:
        h.remove()
    return out, caps


def max_abs(a, b):
    return (a - b).abs().max().item()


def dump(name, folder, stages, tiled_t, frames):
    vae = AutoencoderKLWan.from_pretrained(os.path.join(FIX, folder), torch_dtype=torch.float32).eval()
    cfg = vae.config
    s = cfg.scale_factor_spatial
    p = cfg.patch_size or 1
    t = {}

    z = torch.randn(1, cfg.z_dim, 5, 4, 6, generator=torch.Generator().manual_seed(SEED_Z))
    sample, caps = decode_with_hooks(vae, z, stages)
    with torch.no_grad():
        for T in (1, 2, 3):
            part = vae.decode(z[:, :, :T], return_dict=False)[0]
            d = max_abs(part, sample[:, :, : 1 + 4 * (T - 1)])
            assert d <= 1e-6, (name, T, d)
    t["z"] = z
    t["sample"] = sample
    t.update(caps)
    print(f"{name}: sample {tuple(sample.shape)} range [{sample.min():.3f}, {sample.max():.3f}], "
          f"clamped {(sample.abs() >= 1).float().mean().item():.4f}")

    tz = torch.randn(1, cfg.z_dim, tiled_t, 7, 9, generator=torch.Generator().manual_seed(SEED_TILED))
    vae.enable_tiling(4 * s, 4 * s, 3 * s, 3 * s)
    with torch.no_grad():
        tiled = vae.decode(tz, return_dict=False)[0]
    vae.disable_tiling()
    with torch.no_grad():
        untiled = vae.decode(tz, return_dict=False)[0]
    print(f"{name}: tiled {tuple(tiled.shape)}, differs from untiled by {max_abs(tiled, untiled):.3f}")
    t["tiled_z"] = tz
    t["tiled_sample"] = tiled

    h, w = 4 * s, 6 * s
    x = torch.rand(1, 3, frames, h, w, generator=torch.Generator().manual_seed(SEED_X)) * 2 - 1
    with torch.no_grad():
        mean = vae.encode(x).latent_dist.mean
        for f in range(1, frames, 4):
            part = vae.encode(x[:, :, :f]).latent_dist.mean
            d = max_abs(part, mean[:, :, : 1 + (f - 1) // 4])
            assert d <= 1e-6, (name, f, d)
    print(f"{name}: encode x {tuple(x.shape)} -> mean {tuple(mean.shape)} (patch {p})")
    t["x"] = x
    t["latent_mean"] = mean

    t = {k: v.contiguous() for k, v in t.items()}
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file(t, path, metadata={"format": "pt"})
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(t)} tensors)")


def main():
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    for case in CASES:
        dump(*case)


if __name__ == "__main__":
    main()
