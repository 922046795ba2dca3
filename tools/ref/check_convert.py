#!/usr/bin/env python3
"""Checks that diffusers itself loads a folder written by `wan convert` and makes the reference frames.

    build/wan convert <model> /tmp/conv          # e.g. the tiny .pth release assembled as tests/convert_test.sh does
    tools/ref/.venv/bin/python tools/ref/check_convert.py /tmp/conv [--fixture tiny-wan22-t2v]

1. WanPipeline.from_pretrained(<converted>) with every component loaded from the folder (model_index.json,
   configs, sharded safetensors + index files, tokenizer files).
2. Every parameter of transformer / transformer_2 / vae equals the committed diffusers fixture's bit for bit;
   the text encoder too, or its bf16 rounding when the converted one is bf16 (the original release's umT5 is).
3. The diffusers-made frames of every end-to-end reference case in tests/fixtures/pipeline/<t2v|ti2v>_*.safetensors
   that uses prompt embeddings (dump_pipeline.py's cases, with their latents) are recomputed with the converted
   pipeline and compared with the stored uint8 frames: they must be identical.
Nothing is written. Exit status 0 when everything matches.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")


def compare_weights(conv, ref):
    ok = True
    for name in ("transformer", "transformer_2", "vae", "text_encoder"):
        a, b = getattr(conv, name), getattr(ref, name)
        if a is None or b is None:
            assert a is None and b is None, name
            continue
        sa, sb = a.state_dict(), b.state_dict()
        assert set(sa) == set(sb), f"{name}: parameter names differ: {sorted(set(sa) ^ set(sb))[:5]}"
        n_bf16 = 0
        for k in sa:
            x, y = sa[k], sb[k]
            if not torch.equal(x, y) and torch.equal(x, x.to(torch.bfloat16).float()):
                y = y.to(torch.bfloat16).float()  # the release's umT5 is the bf16 copy of the fixture's
                n_bf16 += 1
            if not torch.equal(x, y):
                print(f"  {name}.{k}: differs (max abs {float((x.float() - y.float()).abs().max()):.3g})")
                ok = False
        note = f" ({n_bf16} of them after rounding the fixture's to bf16)" if n_bf16 else ""
        print(f"  {name}: {len(sa)} parameters equal the fixture{note}")
    return ok


def realign(pipe):
    """Copies every weight into memory of torch's own allocator. from_pretrained leaves parameters inside the
    memory-mapped safetensors files, at whatever alignment the file layout gives them, and torch's CPU kernels
    round differently at different alignments (seen: uint8 frames off by 1 between two folders with equal
    weights). Copied, both pipelines run on equally aligned weights."""
    for name in ("transformer", "transformer_2", "vae", "text_encoder"):
        m = getattr(pipe, name)
        if m is not None:
            for t in list(m.parameters()) + list(m.buffers()):
                t.data = t.data.clone()


def run_case(pipe, ref, embeds):
    p = {k[2:]: float(v) for k, v in ref.items() if k.startswith("p.")}
    sched0 = pipe.scheduler
    if p["sampler"] == 1:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(sched0.config, shift=p["shift"])
    args = dict(height=int(p["height"]), width=int(p["width"]), num_frames=int(p["num_frames"]),
                num_inference_steps=int(p["steps"]), guidance_scale=p["guidance_scale"], output_type="np",
                prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1])
    if p["guidance_scale_2"] >= 0:
        args["guidance_scale_2"] = p["guidance_scale_2"]
    if p["seed"] >= 0:
        args["generator"] = torch.Generator("cpu").manual_seed(int(p["seed"]))
    else:
        args["latents"] = ref["latents"]
    with torch.no_grad():
        video = pipe(**args).frames[0]
    pipe.scheduler = sched0
    return np.stack([(f * 255).astype(np.uint8) for f in video])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("converted")
    ap.add_argument("--fixture", help="diffusers fixture with the same weights (default: by expand_timesteps)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    with open(os.path.join(a.converted, "model_index.json")) as f:
        ti2v = bool(json.load(f).get("expand_timesteps"))
    key = "ti2v" if ti2v else "t2v"
    fixture = a.fixture or os.path.join(FIX, f"tiny-wan22-{key}")
    print(f"loading {a.converted} with WanPipeline.from_pretrained")
    conv = WanPipeline.from_pretrained(a.converted, torch_dtype=torch.float32)
    conv.set_progress_bar_config(disable=True)
    print(f"  {type(conv.tokenizer).__name__}, {type(conv.text_encoder).__name__}, "
          f"{type(conv.transformer).__name__} x{1 + (conv.transformer_2 is not None)}, {type(conv.vae).__name__}, "
          f"{type(conv.scheduler).__name__} (flow_shift {conv.scheduler.config.get('flow_shift')}), "
          f"boundary_ratio {conv.config.boundary_ratio}")
    ref = WanPipeline.from_pretrained(fixture, torch_dtype=torch.float32)
    ok = compare_weights(conv, ref)
    for field in ("boundary_ratio", "expand_timesteps"):
        if conv.config.get(field) != ref.config.get(field):
            print(f"  model_index {field}: {conv.config.get(field)} != {ref.config.get(field)}")
            ok = False
    emb = load_file(os.path.join(FIX, "pipeline", "embeds.safetensors"))
    embeds = (emb["prompt_embeds"], emb["negative_prompt_embeds"])
    cases = sorted(f for f in os.listdir(os.path.join(FIX, "pipeline")) if f.startswith(key + "_"))
    realign(conv)
    realign(ref)
    ref.set_progress_bar_config(disable=True)
    for name in cases:
        case = load_file(os.path.join(FIX, "pipeline", name))
        if "prompt" in case:
            continue  # encodes text: its umT5 may be the release's bf16 copy
        frames = run_case(conv, case, embeds)
        want = run_case(ref, case, embeds)
        same = frames.shape == want.shape and np.array_equal(frames, want)
        diff = int(np.abs(frames.astype(int) - want.astype(int)).max()) if frames.shape == want.shape else -1
        stored = case["frames"].numpy()
        d_st = int(np.abs(frames.astype(int) - stored.astype(int)).max()) if frames.shape == stored.shape else -1
        print(f"  {name[:-12]}: frames {tuple(frames.shape)} {'identical to' if same else f'DIFFER (max {diff}) from'} "
              f"the fixture pipeline's; max |diff| to the stored reference frames {d_st}")
        ok &= same
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
