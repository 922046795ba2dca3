#!/usr/bin/env python3
"""End-to-end references for the C WanPipeline (wan_generate, tests/test_pipeline.c; pipeline.md §7).

Loads the committed folders tests/fixtures/tiny-wan22-t2v and tiny-wan22-ti2v with WanPipeline.from_pretrained
(CPU, float32; never rebuilds a model), runs the real pipeline __call__ and writes tests/fixtures/pipeline/:

  embeds.safetensors        prompt_embeds / negative_prompt_embeds F32 [1,512,64]: random rows 0..L-1 (L = 7 and
                            5), zero rows after them, as encode_prompt pads. Every case except `prompt` uses them.
  <case>.safetensors        one per case:
      p.height p.width p.num_frames p.steps p.guidance_scale p.guidance_scale_2 p.sampler p.shift p.seed
          F64 [1]: the call's arguments as given (before diffusers rounds them); guidance_scale_2 -1 = None;
          sampler 0 UniPC (the folder's scheduler), 1 FlowMatchEulerDiscreteScheduler; shift -1 = the config's;
          seed -1 = explicit `latents` were passed.
      prompt, negative_prompt U8 (UTF-8 bytes; only the `prompt` case, which encodes text)
      latents              F32 [1,C,T,h,w] the initial latents (the `sample` of the first scheduler step)
      timesteps            F32 [N] scheduler.timesteps (UniPC int64 values, exact in F32)
      sigmas               F32 [N+1] scheduler.sigmas
      experts              I32 [N] which expert ran each step (0 transformer, 1 transformer_2), from forward hooks
      model_output.i       F32 the guided prediction handed to scheduler.step at step i
      latents_step.i       F32 latents after step i (callback_on_step_end)
      denormalized         F32 the tensor handed to vae.decode (latents / (1/std) + mean)
      frames               U8 [F,H,W,3] = uint8(np_frames * 255), exactly as export_to_video makes them

Usage: tools/ref/.venv/bin/python tools/ref/dump_pipeline.py   (about 30 s; two runs give identical files)
"""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "pipeline")
SEED_EMBEDS = 300
PROMPT = "a red circle moves over the green grass"

# name, model, height, width, num_frames, steps, guidance_scale, guidance_scale_2 (None), euler shift (None:
# UniPC from the folder), latents seed (None: pass a CPU generator seeded with `seed` instead), seed, prompt
CASES = [
    # t2v: two experts, UniPC shift 3; N=4 gives t = [999, 900, 750, 500] (2 high + 2 low steps)
    ("t2v_unipc", "t2v", 32, 48, 9, 4, 6.0, 2.0, None, 1, None, False),
    ("t2v_unipc_nocfg", "t2v", 32, 48, 9, 4, 1.0, None, None, 2, None, False),
    ("t2v_unipc_n1", "t2v", 32, 48, 9, 1, 6.0, 2.0, None, 3, None, False),
    ("t2v_unipc_n2", "t2v", 32, 48, 9, 2, 6.0, 2.0, None, 4, None, False),
    ("t2v_unipc_n6", "t2v", 32, 48, 9, 6, 6.0, 2.0, None, 5, None, False),
    ("t2v_euler", "t2v", 32, 48, 9, 4, 6.0, 2.0, 7.0, 6, None, False),
    ("t2v_euler_nocfg", "t2v", 32, 48, 9, 3, 1.0, None, 7.0, 7, None, False),
    # tall non-square size; guidance_scale_2 None -> guidance_scale for both experts
    ("t2v_tall", "t2v", 64, 32, 5, 3, 5.0, None, None, 8, None, False),
    # num_frames rounding: 10 -> 9, 12 -> 13 (up)
    ("t2v_frames10", "t2v", 32, 48, 10, 2, 6.0, 2.0, None, 9, None, False),
    ("t2v_frames12", "t2v", 32, 32, 12, 2, 6.0, 2.0, None, 10, None, False),
    # noise from a CPU generator instead of explicit latents
    ("t2v_seed", "t2v", 32, 48, 9, 3, 6.0, 2.0, None, None, 42, False),
    # text prompt and negative prompt "" through the tokenizer and umT5
    ("t2v_prompt", "t2v", 32, 48, 5, 4, 6.0, 2.0, None, 11, None, True),
    # ti2v: one expert, expand_timesteps, z48 VAE (spatial multiple 32), UniPC shift 5
    ("ti2v_unipc", "ti2v", 64, 96, 9, 4, 5.0, None, None, 12, None, False),
    ("ti2v_unipc_nocfg", "ti2v", 64, 96, 5, 3, 1.0, None, None, 13, None, False),
    ("ti2v_euler", "ti2v", 64, 64, 5, 3, 4.0, None, 7.0, 14, None, False),
    ("ti2v_euler_nocfg", "ti2v", 64, 96, 5, 2, 1.0, None, 7.0, 15, None, False),
    # 80x112 is a multiple of 16 (check_inputs) but not of 32: diffusers rounds it down to 64x96 with a warning
    ("ti2v_round", "ti2v", 80, 112, 5, 2, 5.0, None, None, 16, None, False),
]


def make_embeds():
    g = torch.Generator("cpu").manual_seed(SEED_EMBEDS)
    pe = torch.randn(1, 512, 64, generator=g)
    ne = torch.randn(1, 512, 64, generator=g)
    pe[:, 7:] = 0.0
    ne[:, 5:] = 0.0
    return pe, ne


def load_pipes():
    pipes = {}
    for key in ("t2v", "ti2v"):
        d = os.path.join(FIX, f"tiny-wan22-{key}")
        tok = PreTrainedTokenizerFast.from_pretrained(os.path.join(d, "tokenizer"))
        pipes[key] = WanPipeline.from_pretrained(d, tokenizer=tok, torch_dtype=torch.float32)
        pipes[key].set_progress_bar_config(disable=True)
    return pipes


def latent_shape(pipe, height, width, frames):
    mult = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
    height, width = height // mult * mult, width // mult * mult
    if frames % 4 != 1:
        frames = frames // 4 * 4 + 1
    s = pipe.vae_scale_factor_spatial
    return (1, pipe.transformer.config.in_channels, (frames - 1) // 4 + 1, height // s, width // s)


def run_case(pipe, case, embeds):
    name, _, height, width, frames, steps, gs, gs2, euler_shift, lat_seed, seed, use_prompt = case
    sched0 = pipe.scheduler
    if euler_shift is not None:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(sched0.config, shift=euler_shift)
    rec = {"experts": [], "model_output": [], "sample0": None, "steps": [], "denorm": None}

    hooks = []
    for idx, net in enumerate((pipe.transformer, pipe.transformer_2)):
        if net is not None:
            hooks.append(net.register_forward_pre_hook(lambda _m, _a, idx=idx: rec["experts"].append(idx)))

    step0 = pipe.scheduler.step

    def step(model_output, timestep, sample, *a, **kw):
        if rec["sample0"] is None:
            rec["sample0"] = sample.detach().clone()
        rec["model_output"].append(model_output.detach().clone())
        return step0(model_output, timestep, sample, *a, **kw)
    pipe.scheduler.step = step

    decode0 = pipe.vae.decode

    def decode(z, *a, **kw):
        rec["denorm"] = z.detach().clone()
        return decode0(z, *a, **kw)
    pipe.vae.decode = decode

    def on_step(_pipe, i, _t, kw):
        rec["steps"].append(kw["latents"].detach().clone())
        return {}

    args = dict(height=height, width=width, num_frames=frames, num_inference_steps=steps, guidance_scale=gs,
                output_type="np", callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"])
    if gs2 is not None:
        args["guidance_scale_2"] = gs2
    if use_prompt:
        args["prompt"] = PROMPT
        args["negative_prompt"] = ""
    else:
        args["prompt_embeds"], args["negative_prompt_embeds"] = embeds
    if lat_seed is not None:
        shape = latent_shape(pipe, height, width, frames)
        args["latents"] = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(lat_seed))
    else:
        args["generator"] = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        video = pipe(**args).frames[0]  # float32 [F, H, W, 3] in [0, 1]

    for h in hooks:
        h.remove()
    timesteps = pipe.scheduler.timesteps.detach().float().clone()
    sigmas = pipe.scheduler.sigmas.detach().float().clone()
    del pipe.scheduler.step
    del pipe.vae.decode
    pipe.scheduler = sched0

    n = len(timesteps)
    per = len(rec["experts"]) // n
    experts = torch.tensor(rec["experts"], dtype=torch.int32).view(n, per)
    assert (experts == experts[:, :1]).all(), f"{name}: the cond and uncond passes used different experts"
    frames_u8 = np.stack([(f * 255).astype(np.uint8) for f in video])  # export_to_video's conversion

    def f64(v):
        return torch.tensor([float(v)], dtype=torch.float64)

    out = {
        "p.height": f64(height), "p.width": f64(width), "p.num_frames": f64(frames), "p.steps": f64(steps),
        "p.guidance_scale": f64(gs), "p.guidance_scale_2": f64(-1 if gs2 is None else gs2),
        "p.sampler": f64(0 if euler_shift is None else 1), "p.shift": f64(-1 if euler_shift is None else euler_shift),
        "p.seed": f64(-1 if seed is None else seed),
        "latents": rec["sample0"], "timesteps": timesteps, "sigmas": sigmas,
        "experts": experts[:, 0].contiguous(), "denormalized": rec["denorm"],
        "frames": torch.from_numpy(frames_u8),
    }
    if use_prompt:
        out["prompt"] = torch.tensor(list(PROMPT.encode("utf-8")), dtype=torch.uint8)
        out["negative_prompt"] = torch.zeros(0, dtype=torch.uint8)
    for i in range(n):
        out[f"model_output.{i}"] = rec["model_output"][i]
        out[f"latents_step.{i}"] = rec["steps"][i]
    out = {k: v.contiguous() for k, v in out.items()}
    save_file(out, os.path.join(OUT, f"{name}.safetensors"))
    hi = int((experts[:, 0] == 0).sum())
    print(f"{name}: latents {tuple(out['latents'].shape)} t={[round(float(t), 3) for t in timesteps]} "
          f"high={hi}/{n} frames {tuple(frames_u8.shape)}")


def check_prompt_tokens(pipe):
    ids = pipe.tokenizer(PROMPT).input_ids
    assert pipe.tokenizer.unk_token_id not in ids and 3 not in ids, f"unknown characters in {PROMPT!r}: {ids}"


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one reduction order, so that two runs give identical files
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    pipes = load_pipes()
    check_prompt_tokens(pipes["t2v"])
    pe, ne = make_embeds()
    save_file({"prompt_embeds": pe.contiguous(), "negative_prompt_embeds": ne.contiguous()},
              os.path.join(OUT, "embeds.safetensors"))
    for case in CASES:
        run_case(pipes[case[1]], case, (pe, ne))


if __name__ == "__main__":
    main()
