#!/usr/bin/env python3
"""Reference tensors for the C port of WanTransformer3DModel (transformer.md, issue 3).

Loads the committed tiny fixture folders (never rebuilds them), runs diffusers' WanTransformer3DModel on the
CPU in float32, and writes small safetensors files under tests/fixtures/transformer/:

  t2v_high.safetensors      transformer   (high-noise expert), t = [875]
  t2v_low.safetensors       transformer_2 (low-noise expert),  t = [875]
  t2v_high_b2.safetensors   transformer, batch 2 with t = [875, 500] and two different contexts
  ti2v_scalar.safetensors   ti2v transformer (48 channels), t = [875]
  ti2v_tokens.safetensors   ti2v transformer, per-token t [1, 72]: frames 0/1/2 at 0/500/999
  t2v_high_bf16.safetensors transformer loaded with torch_dtype=bfloat16 (so the fp32-keep modules stay fp32),
                            then cast back to fp32 and run in fp32: the reference for bf16-stored weights
  bf16/                     that bf16-loaded transformer, saved with save_pretrained (mixed BF16/F32 tensors)

Every case file holds the inputs (hidden_states [B,C,3,8,12], timestep, encoder_hidden_states [B,16,64] whose
last 6 rows are zero), the output `sample`, and per-stage intermediates from forward hooks for debugging:
patch [B,L,D], temb, timestep_proj, text_emb [B,16,D], block.N [B,L,D], norm_out [B,L,D], proj_out [B,L,Op].

Usage:  tools/ref/.venv/bin/python tools/ref/dump_transformer.py
"""

import math
import os
import shutil

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.pop("DIFFUSERS_ATTN_BACKEND", None)

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "transformer")
SEED_INPUTS = 100


def make_inputs(gen, channels, batch=1):
    x = torch.randn(batch, channels, 3, 8, 12, generator=gen)
    ctx = torch.randn(batch, 16, 64, generator=gen)
    ctx[:, 10:] = 0.0  # zero padding rows, as the pipeline pads the prompt to max_sequence_length
    return x, ctx


def run(model, x, t, ctx):
    """Forward with hooks; returns {name: fp32 tensor} with the inputs, intermediates and the sample."""
    caps = {}
    hooks = []

    def grab(name, fn=lambda o: o):
        def hook(_mod, _inp, out):
            caps[name] = fn(out).detach().float().contiguous()
        return hook

    hooks.append(model.patch_embedding.register_forward_hook(grab("patch", lambda o: o.flatten(2).transpose(1, 2))))

    def cond_hook(_mod, _inp, out):
        temb, tproj, text, _img = out
        caps["temb"] = temb.detach().float().contiguous()
        caps["timestep_proj"] = tproj.detach().float().contiguous()
        caps["text_emb"] = text.detach().float().contiguous()
    hooks.append(model.condition_embedder.register_forward_hook(cond_hook))
    for i, blk in enumerate(model.blocks):
        hooks.append(blk.register_forward_hook(grab(f"block.{i}")))
    hooks.append(model.norm_out.register_forward_hook(grab("norm_out_ln")))
    hooks.append(model.proj_out.register_forward_hook(grab("proj_out")))
    with torch.no_grad():
        out = model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
    for h in hooks:
        h.remove()
    caps.pop("norm_out_ln")  # LN before modulation; not a stage of the C code
    caps["sample"] = out.detach().float().contiguous()
    caps["hidden_states"] = x.contiguous()
    caps["timestep"] = t.contiguous()
    caps["encoder_hidden_states"] = ctx.contiguous()
    return caps


def save(name, caps):
    path = os.path.join(OUT, name)
    save_file(caps, path)
    print(f"{name}: " + ", ".join(f"{k}{list(v.shape)}" for k, v in sorted(caps.items())))


def check_sinusoid_freqs():
    """The C code recomputes diffusers' fp32 sinusoid: the exponent i * fp32(-ln 10000) / half rounded in fp32,
    then a correctly rounded exp. Reports how many of torch's fp32 frequencies differ from that (by one ulp)."""
    half = 128
    ref = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    e = torch.arange(half, dtype=torch.float32) * torch.tensor(-math.log(10000), dtype=torch.float32) / half
    ours = torch.exp(e.double()).float()
    n = int((ours != ref).sum())
    print(f"sinusoid frequencies: {n} of {half} differ from the C recipe "
          f"(max rel {float(((ours - ref).abs() / ref).max()):.2g})")


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    check_sinusoid_freqs()
    gen = torch.Generator().manual_seed(SEED_INPUTS)
    t2v = os.path.join(FIX, "tiny-wan22-t2v")
    ti2v = os.path.join(FIX, "tiny-wan22-ti2v")

    high = WanTransformer3DModel.from_pretrained(os.path.join(t2v, "transformer")).eval()
    low = WanTransformer3DModel.from_pretrained(os.path.join(t2v, "transformer_2")).eval()
    five = WanTransformer3DModel.from_pretrained(os.path.join(ti2v, "transformer")).eval()

    x, ctx = make_inputs(gen, 16)
    t = torch.tensor([875], dtype=torch.int64)
    save("t2v_high.safetensors", run(high, x, t, ctx))
    save("t2v_low.safetensors", run(low, x, t, ctx))

    xb, ctxb = make_inputs(gen, 16, batch=2)
    save("t2v_high_b2.safetensors", run(high, xb, torch.tensor([875, 500], dtype=torch.int64), ctxb))

    x5, ctx5 = make_inputs(gen, 48)
    save("ti2v_scalar.safetensors", run(five, x5, t, ctx5))
    per_frame = torch.tensor([0, 500, 999], dtype=torch.int64)
    t_tok = per_frame.repeat_interleave(4 * 6).unsqueeze(0)  # [1, 72]: token l = (f*H' + h)*W' + w
    save("ti2v_tokens.safetensors", run(five, x5, t_tok, ctx5))

    # bf16 weights: loaded the way the pipeline loads them, then computed in fp32 from the rounded values
    m16 = WanTransformer3DModel.from_pretrained(os.path.join(t2v, "transformer"), torch_dtype=torch.bfloat16)
    bf16_dir = os.path.join(OUT, "bf16")
    shutil.rmtree(bf16_dir, ignore_errors=True)
    m16.save_pretrained(bf16_dir, safe_serialization=True)
    kinds = {}
    for n, p in m16.state_dict().items():
        kinds.setdefault(str(p.dtype), []).append(n)
    print("bf16 copy dtypes: " + ", ".join(f"{k}: {len(v)}" for k, v in kinds.items()))
    m32 = m16.float().eval()
    save("t2v_high_bf16.safetensors", run(m32, x, t, ctx))


if __name__ == "__main__":
    main()
