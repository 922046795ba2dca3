#!/usr/bin/env python3
"""LoRA references for wan.c (src/lora.c, tests/test_lora.c; pipeline.md §5).

Loads the committed tests/fixtures/tiny-wan22-t2v folder (CPU, float32; never rebuilds a model), makes small
LoRA adapters for its two tiny experts in each key format found in the wild, and runs the real WanPipeline with
diffusers' `load_lora_weights` (PEFT backend) on fixed latents and prompt embeddings. Writes tests/fixtures/lora/:

  adapters (rank 4 unless said otherwise; A ~ 0.1·randn, B ~ 0.1·randn from fixed seeds):
    peft_high.safetensors   diffusers/PEFT format made by PEFT itself (LoraConfig r 4, lora_alpha 8, rank_pattern
                            and alpha_pattern for ffn.net.2 (r 2, alpha 1), init_lora_weights False) via
                            WanPipeline.save_lora_weights with transformer_lora_adapter_metadata: keys
                            `transformer.blocks.N.attn1.to_q.lora_A.weight` ..., + time_proj, proj_out,
                            text_embedder.linear_1; the LoraConfig as JSON in __metadata__.lora_adapter_metadata.
    peft_low.safetensors    the same for the low-noise expert with lora_bias=True (`lora_B.bias` keys), r 4,
                            alpha 2, use_rslora (scale alpha/sqrt(r) = 1).
    orig_high/low.safetensors  original/ComfyUI names: `diffusion_model.blocks.N.self_attn.q.lora_down.weight`,
                            `.lora_up.weight`, `.alpha` (alpha 3 or 6: scales 0.75 / 1.5), `.diff_b` on every
                            linear (as lightx2v files have; diffusers leaves the lora_B bias of a module without
                            one on the meta device), plus head.head, time_projection.1 and text_embedding.0 LoRAs
                            (no alpha: diffusers' converter cannot take one there); written by renaming keys, then
                            loaded through diffusers' own converter.
    kohya_high/low.safetensors  kohya/musubi names `lora_unet_blocks_N_self_attn_q.lora_down.weight`, `.lora_up`,
                            `.alpha` (all block linears, alpha 2 = rank/2), stored in BF16 (alpha/rank a power
                            of two, so diffusers' folding of the scale into bf16 weights is exact).
    diff.safetensors        full deltas (lightx2v style): `.diff` on blocks.0.self_attn.q (a linear weight),
                            blocks.1.norm3 (the affine cross-attention norm), blocks.0.cross_attn.norm_k,
                            blocks.1.modulation, head.modulation, patch_embedding (5-D); `.diff_b` on norm3 and
                            patch_embedding and time_embedding.0. diffusers drops or ignores most of these keys;
                            its reference is therefore made by adding the deltas to the weights (ComfyUI's
                            semantics: W += strength·diff) and running the plain pipeline.
  embeds.safetensors      prompt_embeds / negative_prompt_embeds F32 [1,12,64] (rows past 7 / 5 are zero)
  case_<name>.safetensors per case: `latents` (initial), `timesteps`, `latents_step.i` (callback_on_step_end),
                          `frames` U8 [F,H,W,3] = uint8(np·255) as export_to_video, and `experts` I32 [N]
  meta.json               the case list (adapters, strengths, targets, sampler, steps, CFG) for the C test

Every adapter is checked after loading: the delta W each PEFT layer applies (lora_B @ lora_A · scaling ·
strength) must equal the one the script meant to write (≤ 1e-6 relative), so the files are read by diffusers
as documented. Usage: tools/ref/.venv/bin/python tools/ref/dump_lora.py   (about 20 s; deterministic)
"""

import copy
import json
import os
import struct
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import transformer_to_original_name  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
T2V = os.path.join(FIX, "tiny-wan22-t2v")
OUT = os.path.join(FIX, "lora")
SEED_EMBEDS = 400
RANK = 4

BLOCK_LINEARS = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                 "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2"]


def gen(seed):
    return torch.Generator("cpu").manual_seed(seed)


def randn(shape, g, std=0.1):
    return torch.randn(shape, generator=g) * std


def linear_modules(tr):
    return {n: m for n, m in tr.named_modules() if isinstance(m, torch.nn.Linear)}


# ---- adapters ------------------------------------------------------------------------------------------------

def make_peft(pipe, tr, seed, path, lora_bias, alpha, use_rslora, patterns):
    """A PEFT adapter on a copy of the expert; returns {module: dW} (without strength)."""
    from peft import LoraConfig, get_peft_model_state_dict

    model = copy.deepcopy(tr)
    targets = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2", "time_proj", "proj_out",
               "text_embedder.linear_1"]
    kw = dict(r=RANK, lora_alpha=alpha, target_modules=targets, init_lora_weights=False, lora_bias=lora_bias,
              use_rslora=use_rslora)
    if patterns:
        kw.update(rank_pattern={"ffn.net.2": 2}, alpha_pattern={"ffn.net.2": 1})
    cfg = LoraConfig(**kw)
    model.add_adapter(cfg, adapter_name="mk")
    g = gen(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_" in name:
                p.copy_(randn(p.shape, g))
    sd = get_peft_model_state_dict(model, adapter_name="mk")
    meta = cfg.to_dict()
    meta = {k: (sorted(v) if isinstance(v, set) else v) for k, v in meta.items()}
    WanPipeline.save_lora_weights(OUT, transformer_lora_layers=sd, weight_name=os.path.basename(path),
                                  transformer_lora_adapter_metadata=meta)
    canonical_header(os.path.join(OUT, os.path.basename(path)))
    deltas = {}
    for name, m in model.named_modules():
        if hasattr(m, "lora_A") and "mk" in m.lora_A:
            A, B = m.lora_A["mk"].weight, m.lora_B["mk"].weight
            s = m.scaling["mk"]
            bias = m.lora_B["mk"].bias
            deltas[name] = ((B @ A) * s, None if bias is None else bias * s)
    return deltas


def canonical_header(path):
    """Rewrites a safetensors header with sorted keys: safetensors writes __metadata__ from a hash map, whose
    order changes from run to run."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.dumps(json.loads(blob[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + blob[8 + n:])


def lr_pair(g, out_f, in_f, rank=RANK):
    return randn((rank, in_f), g), randn((out_f, rank), g)


def make_orig(tr, seed, path):
    """Original/ComfyUI names, lora_down/lora_up/alpha + diff_b; returns {module: (dW, db)}."""
    g = gen(seed)
    lin = linear_modules(tr)
    sd, deltas = {}, {}
    mods = [f"blocks.{i}.{m}" for i in range(len(tr.blocks)) for m in BLOCK_LINEARS]
    mods += ["proj_out", "condition_embedder.time_proj", "condition_embedder.text_embedder.linear_1"]
    for k, name in enumerate(mods):
        w = lin[name].weight
        A, B = lr_pair(g, w.shape[0], w.shape[1])
        orig = transformer_to_original_name(name + ".weight")[: -len(".weight")]
        sd[f"diffusion_model.{orig}.lora_down.weight"] = A
        sd[f"diffusion_model.{orig}.lora_up.weight"] = B
        s = 1.0
        if name.startswith("blocks."):
            alpha = 3.0 if k % 2 else 6.0
            sd[f"diffusion_model.{orig}.alpha"] = torch.tensor(alpha)
            s = alpha / RANK
        db = randn((w.shape[0],), g)
        sd[f"diffusion_model.{orig}.diff_b"] = db
        deltas[name] = ((B @ A) * s, db)
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    return deltas


def make_kohya(tr, seed, path):
    g = gen(seed)
    lin = linear_modules(tr)
    sd, deltas = {}, {}
    for i in range(len(tr.blocks)):
        for m in BLOCK_LINEARS:
            name = f"blocks.{i}.{m}"
            w = lin[name].weight
            A, B = lr_pair(g, w.shape[0], w.shape[1])
            A, B = A.bfloat16(), B.bfloat16()
            orig = transformer_to_original_name(name + ".weight")[: -len(".weight")]
            key = "lora_unet_" + orig.replace(".", "_")
            sd[f"{key}.lora_down.weight"] = A
            sd[f"{key}.lora_up.weight"] = B
            sd[f"{key}.alpha"] = torch.tensor(2.0, dtype=torch.bfloat16)
            deltas[name] = ((B.float() @ A.float()) * (2.0 / RANK), None)
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    return deltas


def make_diff(tr, seed, path):
    """Full deltas under original names; returns {diffusers tensor name: delta}."""
    g = gen(seed)
    params = dict(tr.named_parameters())
    names = ["blocks.0.attn1.to_q.weight", "blocks.1.norm2.weight", "blocks.1.norm2.bias",
             "blocks.0.attn2.norm_k.weight", "blocks.1.scale_shift_table", "scale_shift_table",
             "patch_embedding.weight", "patch_embedding.bias", "condition_embedder.time_embedder.linear_1.bias"]
    sd, deltas = {}, {}
    for name in names:
        d = randn(params[name].shape, g, 0.05)
        orig = transformer_to_original_name(name)
        if orig.endswith(".weight"):
            key = orig[: -len(".weight")] + ".diff"
        elif orig.endswith(".bias"):
            key = orig[: -len(".bias")] + ".diff_b"
        else:
            key = orig + ".diff"  # modulation tables are parameters, not modules
        sd["diffusion_model." + key] = d
        deltas[name] = d
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    return deltas


# ---- reference runs ------------------------------------------------------------------------------------------

def check_loaded(tr, adapter, strength, want):
    """The delta each PEFT layer of `tr` applies for `adapter` equals `want` ({module: (dW, db)})."""
    got = {}
    for name, m in tr.named_modules():
        if hasattr(m, "lora_A") and adapter in m.lora_A:
            s = m.scaling[adapter]
            A, B = m.lora_A[adapter].weight, m.lora_B[adapter].weight
            bias = m.lora_B[adapter].bias
            got[name] = ((B @ A) * s, None if bias is None else bias * s)
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for name, (dw, db) in want.items():
        gw, gb = got[name]
        err = (gw - dw * 1.0).abs().max() / dw.abs().max()
        assert err < 1e-6, f"{adapter} {name}: dW differs by {float(err)}"
        if db is not None:
            assert gb is not None and float((gb - db).abs().max().detach()) < 1e-6, f"{adapter} {name}: bias delta"
        else:
            assert gb is None or float(gb.abs().max()) == 0.0, f"{adapter} {name}: unexpected bias"
    del strength


def run(pipe, name, case, embeds, adapters):
    """case: dict(loras=[(file, strength, target)], sampler, steps, cfg, cfg2, seed)."""
    sched0 = pipe.scheduler
    if case["sampler"] == "euler":
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(sched0.config, shift=case["shift"])
    names, weights, saved = [], [], []
    for j, (fname, strength, target) in enumerate(case["loras"]):
        kind = fname.split("_")[0].split(".")[0]
        if kind == "diff":  # ComfyUI semantics: add strength·delta to the weights of the targeted experts
            for tr in ([pipe.transformer] if target in ("high", "both") else []) + \
                      ([pipe.transformer_2] if target in ("low", "both") else []):
                saved.append((tr, copy.deepcopy(tr.state_dict())))
                with torch.no_grad():
                    params = dict(tr.named_parameters())
                    for t, d in adapters[fname]["deltas"].items():
                        params[t] += strength * d
            continue
        path = os.path.join(OUT, fname)
        for k, tgt in enumerate(["high", "low"]):
            if target not in (tgt, "both"):
                continue
            an = f"a{j}{tgt}"
            pipe.load_lora_weights(path, adapter_name=an, load_into_transformer_2=(tgt == "low"))
            check_loaded(pipe.transformer_2 if tgt == "low" else pipe.transformer, an, strength,
                         adapters[fname]["deltas"])
            names.append(an)
            weights.append(strength)
    if names:
        pipe.set_adapters(names, adapter_weights=weights)

    rec = {"experts": [], "steps": [], "sample0": None}
    hooks = [net.register_forward_pre_hook(lambda _m, _a, idx=idx: rec["experts"].append(idx))
             for idx, net in enumerate((pipe.transformer, pipe.transformer_2))]

    def on_step(_pipe, i, _t, kw):
        rec["steps"].append(kw["latents"].detach().clone())
        return {}

    lat = torch.randn((1, 16, 3, 4, 6), generator=gen(case["seed"]))
    args = dict(height=32, width=48, num_frames=9, num_inference_steps=case["steps"], guidance_scale=case["cfg"],
                guidance_scale_2=case["cfg2"], output_type="np", latents=lat.clone(), callback_on_step_end=on_step,
                callback_on_step_end_tensor_inputs=["latents"], prompt_embeds=embeds[0])
    if case["cfg"] > 1.0:
        args["negative_prompt_embeds"] = embeds[1]
    with torch.no_grad():
        video = pipe(**args).frames[0]
    for h in hooks:
        h.remove()
    timesteps = pipe.scheduler.timesteps.detach().float().clone()
    n = len(timesteps)
    per = len(rec["experts"]) // n
    experts = torch.tensor(rec["experts"], dtype=torch.int32).view(n, per)[:, 0].contiguous()
    frames_u8 = np.stack([(f * 255).astype(np.uint8) for f in video])
    out = {"latents": lat, "timesteps": timesteps, "experts": experts, "frames": torch.from_numpy(frames_u8)}
    for i in range(n):
        out[f"latents_step.{i}"] = rec["steps"][i]
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, f"case_{name}.safetensors"))

    if names:
        pipe.unload_lora_weights()
    for tr, sd in saved:
        tr.load_state_dict(sd)
    pipe.scheduler = sched0
    return frames_u8, out


CASES = {
    # diffusers' default load goes to `transformer` (the high-noise expert) only
    "peft_high": dict(loras=[("peft_high.safetensors", 1.0, "high")], sampler="unipc", steps=4, cfg=6.0, cfg2=2.0,
                      seed=1),
    # load_into_transformer_2=True: the low-noise expert only
    "peft_low": dict(loras=[("peft_low.safetensors", 1.0, "low")], sampler="unipc", steps=4, cfg=6.0, cfg2=2.0,
                     seed=2),
    "orig_both": dict(loras=[("orig_high.safetensors", 0.8, "high"), ("orig_low.safetensors", 1.25, "low")],
                      sampler="unipc", steps=4, cfg=6.0, cfg2=2.0, seed=3),
    "kohya_both": dict(loras=[("kohya_high.safetensors", 1.0, "high"), ("kohya_low.safetensors", 1.0, "low")],
                       sampler="unipc", steps=4, cfg=6.0, cfg2=2.0, seed=4),
    # one file on both experts, at half strength
    "orig_same": dict(loras=[("orig_high.safetensors", 0.5, "both")], sampler="unipc", steps=4, cfg=6.0, cfg2=2.0,
                      seed=5),
    # two adapters stacked on the high-noise expert
    "stack": dict(loras=[("peft_high.safetensors", 0.6, "high"), ("kohya_high.safetensors", 0.9, "high")],
                  sampler="unipc", steps=4, cfg=6.0, cfg2=2.0, seed=6),
    # full deltas (weights patched directly: see the module docstring)
    "diff_both": dict(loras=[("diff.safetensors", 1.0, "both")], sampler="unipc", steps=4, cfg=6.0, cfg2=2.0,
                      seed=7),
    # the Wan2.2-Lightning recipe (pipeline.md 3.7): 4 Euler steps, shift 5, no CFG, one LoRA per expert
    "lightning": dict(loras=[("orig_high.safetensors", 1.0, "high"), ("orig_low.safetensors", 1.0, "low")],
                      sampler="euler", shift=5.0, steps=4, cfg=1.0, cfg2=1.0, seed=8),
}


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    tok = PreTrainedTokenizerFast.from_pretrained(os.path.join(T2V, "tokenizer"))
    pipe = WanPipeline.from_pretrained(T2V, tokenizer=tok, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    hi, lo = pipe.transformer, pipe.transformer_2

    adapters = {
        "peft_high.safetensors": dict(deltas=make_peft(pipe, hi, 10, "peft_high.safetensors", False, 8, False,
                                                       True)),
        "peft_low.safetensors": dict(deltas=make_peft(pipe, lo, 11, "peft_low.safetensors", True, 2, True, False)),
        "orig_high.safetensors": dict(deltas=make_orig(hi, 12, os.path.join(OUT, "orig_high.safetensors"))),
        "orig_low.safetensors": dict(deltas=make_orig(lo, 13, os.path.join(OUT, "orig_low.safetensors"))),
        "kohya_high.safetensors": dict(deltas=make_kohya(hi, 14, os.path.join(OUT, "kohya_high.safetensors"))),
        "kohya_low.safetensors": dict(deltas=make_kohya(lo, 15, os.path.join(OUT, "kohya_low.safetensors"))),
        "diff.safetensors": dict(deltas=make_diff(hi, 16, os.path.join(OUT, "diff.safetensors"))),
    }
    g = gen(SEED_EMBEDS)
    pe, ne = torch.randn(1, 12, 64, generator=g), torch.randn(1, 12, 64, generator=g)
    pe[:, 7:] = 0.0
    ne[:, 5:] = 0.0
    save_file({"prompt_embeds": pe.contiguous(), "negative_prompt_embeds": ne.contiguous()},
              os.path.join(OUT, "embeds.safetensors"))

    _, base = run(pipe, "_base", dict(CASES["peft_high"], loras=[]), (pe, ne), adapters)
    os.remove(os.path.join(OUT, "case__base.safetensors"))
    for name, case in CASES.items():
        frames, out = run(pipe, name, case, (pe, ne), adapters)
        line = f"{name}: t={[round(float(t), 2) for t in out['timesteps']]} experts={out['experts'].tolist()}"
        if case["cfg"] == 6.0:
            last = f"latents_step.{case['steps'] - 1}"
            moved = float((out[last] - base[last]).abs().max() / base[last].abs().max())
            line += f" max|latents - no LoRA| / max|latents| = {moved:.3f}, mean |frames - no LoRA| = " \
                    f"{np.abs(frames.astype(int) - base['frames'].numpy().astype(int)).mean():.2f}"
            assert moved > 0.05, f"{name}: the LoRA barely changes the output"
        print(line)
    meta = {"cases": {k: {kk: vv for kk, vv in v.items()} for k, v in CASES.items()},
            "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
                         "peft": __import__("peft").__version__}}
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
