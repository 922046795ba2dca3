#!/usr/bin/env python3
"""Reference dumps for wan.c's schedulers, torch-compatible RNG and frame post-processing.

Writes (all small, deterministic):
  tests/fixtures/sampler/grids.safetensors        timesteps + sigmas after set_timesteps(N)
  tests/fixtures/sampler/trajectories.safetensors fixed sample + fixed model outputs, every prev_sample
  tests/fixtures/rng/randn.safetensors            torch.randn on a seeded CPU generator
  tests/fixtures/video/postprocess.safetensors    VideoProcessor.postprocess_video + export_to_video's uint8
  tests/fixtures/sampler/meta.json                versions and the case lists

Runs the real diffusers/torch code on the CPU. The scheduler config of the UniPC cases is loaded from
the committed fixture tests/fixtures/tiny-wan22-t2v/scheduler (flow shift overridden per case with
from_config, as a user would). Usage: tools/ref/.venv/bin/python tools/ref/dump_sampler.py
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
import diffusers
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.video_processor import VideoProcessor
from safetensors.numpy import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
SCHED_DIR = os.path.join(FIX, "tiny-wan22-t2v", "scheduler")

GRID_STEPS = [1, 2, 3, 4, 10, 40]
GRID_SHIFTS = [1.0, 3.0, 5.0, 12.0]
# the released configs (pipeline.md §1.5) plus odd values that are not exact in float32
EXTRA_GRIDS = [(40, 3.0), (40, 12.0), (50, 5.0), (7, 3.7), (25, 0.5), (1000, 5.0)]

# (kind, N, shift, options) for the trajectory cases
TRAJ_CASES = [
    ("unipc", 1, 3.0, {}),
    ("unipc", 2, 3.0, {}),
    ("unipc", 3, 1.0, {}),
    ("unipc", 4, 3.0, {}),
    ("unipc", 10, 12.0, {}),
    ("unipc", 40, 12.0, {}),
    ("unipc_bh1", 6, 5.0, {"solver_type": "bh1"}),
    ("unipc_nocorr", 6, 3.0, {"disable_corrector": [0, 2]}),
    ("euler", 1, 3.0, {}),
    ("euler", 4, 5.0, {}),
    ("euler", 10, 7.0, {}),
    ("dpm", 1, 3.0, {}),
    ("dpm", 2, 3.0, {}),
    ("dpm", 4, 5.0, {}),
    ("dpm", 10, 12.0, {}),
    ("dpm", 20, 3.0, {}),
]
TRAJ_SHAPE = (1, 16, 2, 4, 6)

RNG_SEEDS = [0, 1, 42, 123456789, 2**32 + 7, 2**64 - 1]
RNG_SIZES = list(range(1, 18)) + [31, 32, 33, 100, 1000, 1024 * 7 + 3]
RNG_BIG = [(42, (1, 16, 21, 60, 104)), (7, (100003,))]  # subsampled
RNG_BIG_STRIDE = 211
RNG_BIG_TAIL = 1000


def shift_name(s):
    return ("%g" % s).replace(".", "p")


def make_scheduler(kind, shift, opts=None):
    opts = dict(opts or {})
    if kind.startswith("unipc"):
        cfg = UniPCMultistepScheduler.load_config(SCHED_DIR)
        return UniPCMultistepScheduler.from_config(cfg, flow_shift=shift, **opts)
    if kind == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    if kind == "dpm":
        return DPMSolverMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction",
                                           use_flow_sigmas=True, flow_shift=shift, solver_order=2,
                                           algorithm_type="dpmsolver++", solver_type="midpoint",
                                           lower_order_final=True, final_sigmas_type="zero")
    raise ValueError(kind)


def dump_grids(out):
    cases = []
    for kind in ["unipc", "euler", "dpm"]:
        grid = [(n, s) for n in GRID_STEPS for s in GRID_SHIFTS] + EXTRA_GRIDS
        for n, s in grid:
            sch = make_scheduler(kind, s)
            sch.set_timesteps(n)
            name = "%s.n%d.s%s" % (kind, n, shift_name(s))
            ts = sch.timesteps.numpy()
            assert ts.dtype == (np.float32 if kind == "euler" else np.int64), ts.dtype
            out[name + ".timesteps"] = np.ascontiguousarray(ts)
            out[name + ".sigmas"] = np.ascontiguousarray(sch.sigmas.numpy().astype(np.float32))
            cases.append([kind, n, s])
    return cases


def dump_trajectories(out):
    cases = []
    for ci, (kind, n, s, opts) in enumerate(TRAJ_CASES):
        sch = make_scheduler(kind.split("_")[0] if kind.startswith("unipc") else kind, s, opts)
        sch.set_timesteps(n)
        sch.set_begin_index(0)
        g = torch.Generator("cpu").manual_seed(1000 + ci)
        x = torch.randn(TRAJ_SHAPE, generator=g, dtype=torch.float32)
        name = "%s.n%d.s%s" % (kind, n, shift_name(s))
        out[name + ".sample"] = x.numpy().copy()
        for i, t in enumerate(sch.timesteps):
            # a velocity-like output: noise - x0 with x0 ~ 0.5 N(0,1), so updates stay O(1)
            v = torch.randn(TRAJ_SHAPE, generator=g, dtype=torch.float32) - 0.5 * x
            out["%s.v%02d" % (name, i)] = v.numpy().copy()
            x = sch.step(v, t, x, return_dict=False)[0]
            assert x.dtype == torch.float32
            out["%s.prev%02d" % (name, i)] = x.numpy().copy()
        cases.append([kind, n, s, opts])
    return cases


def dump_rng(out):
    for seed in RNG_SEEDS:
        for n in RNG_SIZES:
            a = torch.randn((n,), generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
            torch.manual_seed(seed)
            b = torch.randn(n)
            assert torch.equal(a, b)
            out["seed%d.n%d" % (seed, n)] = a.numpy().copy()
    # the shape does not matter, only the element count (checked here once)
    a = torch.randn((1, 16, 3, 4, 6), generator=torch.Generator("cpu").manual_seed(5))
    b = torch.randn((1152,), generator=torch.Generator("cpu").manual_seed(5))
    assert torch.equal(a.flatten(), b)
    for seed, shape in RNG_BIG:
        a = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        subsample(out, "big.seed%d" % seed, a.flatten().numpy())
    # torch's portable kernel (what AVX-512 and aarch64 builds run): a child process with
    # ATEN_CPU_CAPABILITY=default
    code = ("import sys, numpy as np, torch\n"
            "a = torch.randn(%s, generator=torch.Generator('cpu').manual_seed(%d), dtype=torch.float32)\n"
            "sys.stdout.buffer.write(a.flatten().numpy().tobytes())\n")
    for seed, shape in RNG_BIG:
        env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
        raw = subprocess.run([sys.executable, "-c", code % (tuple(shape), seed)], env=env, check=True,
                             stdout=subprocess.PIPE).stdout
        subsample(out, "scalar.seed%d" % seed, np.frombuffer(raw, dtype=np.float32))


def subsample(out, prefix, flat):
    idx = np.unique(np.concatenate([np.arange(0, flat.size, RNG_BIG_STRIDE),
                                    np.arange(flat.size - RNG_BIG_TAIL, flat.size)])).astype(np.int64)
    key = "%s.n%d" % (prefix, flat.size)
    out[key + ".idx"] = idx
    out[key + ".val"] = flat[idx].copy()


def dump_postprocess(out):
    g = torch.Generator("cpu").manual_seed(3)
    F, H, W = 3, 5, 7
    video = torch.rand((1, 3, F, H, W), generator=g) * 2.4 - 1.2  # some values outside [-1, 1]
    flat = video.view(-1)
    # values on and next to the truncation/rounding boundaries: y*255 = k or k + 0.5
    special = []
    for k in [0, 1, 100, 127, 128, 254, 255]:
        for frac in [0.0, 0.5]:
            y = (k + frac) / 255.0
            x = (y - 0.5) / 0.5
            special += [x, np.nextafter(np.float32(x), np.float32(2)), np.nextafter(np.float32(x), np.float32(-2))]
    special += [-1.0, 1.0, 0.0, -0.0]
    flat[: len(special)] = torch.tensor(special, dtype=torch.float32)
    vp = VideoProcessor(vae_scale_factor=8)
    frames_np = vp.postprocess_video(video, output_type="np")  # (1, F, H, W, 3) float32 in [0, 1]
    trunc = np.stack([(frame * 255).astype(np.uint8) for frame in frames_np[0]])  # export_to_video
    pil = vp.postprocess_video(video, output_type="pil")[0]
    rounded = np.stack([np.array(im) for im in pil])
    out["video"] = video[0].numpy().copy()  # [3, F, H, W]
    out["frames_np"] = frames_np[0].astype(np.float32)
    out["frames_trunc"] = trunc
    out["frames_round"] = rounded


def save(tensors, path):
    # safetensors.numpy.save_file writes a non-contiguous array in its memory order, not in C order
    # (diffusers' "np" frames are permuted views), so make every array C-contiguous first
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path)


def main():
    os.makedirs(os.path.join(FIX, "sampler"), exist_ok=True)
    os.makedirs(os.path.join(FIX, "rng"), exist_ok=True)
    os.makedirs(os.path.join(FIX, "video"), exist_ok=True)
    torch.set_num_threads(1)
    grids, traj, rng, post = {}, {}, {}, {}
    grid_cases = dump_grids(grids)
    traj_cases = dump_trajectories(traj)
    dump_rng(rng)
    dump_postprocess(post)
    meta = {"torch": torch.__version__, "diffusers": diffusers.__version__, "numpy": np.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "grid_cases": grid_cases, "trajectory_cases": traj_cases, "trajectory_shape": TRAJ_SHAPE,
            "rng_seeds": RNG_SEEDS, "rng_sizes": RNG_SIZES,
            "rng_big": [[s, list(sh)] for s, sh in RNG_BIG], "rng_big_stride": RNG_BIG_STRIDE,
            "rng_big_tail": RNG_BIG_TAIL}
    save(grids, os.path.join(FIX, "sampler", "grids.safetensors"))
    save(traj, os.path.join(FIX, "sampler", "trajectories.safetensors"))
    save(rng, os.path.join(FIX, "rng", "randn.safetensors"))
    save(post, os.path.join(FIX, "video", "postprocess.safetensors"))
    with open(os.path.join(FIX, "sampler", "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    for d in ["sampler", "rng", "video"]:
        for fn in sorted(os.listdir(os.path.join(FIX, d))):
            p = os.path.join(FIX, d, fn)
            print("%-50s %8d bytes" % (os.path.relpath(p, ROOT), os.path.getsize(p)))
    if meta["cpu_capability"] not in ("AVX2", "AVX512"):
        print("warning: torch uses its %s kernels here; randn fixtures from a non-AVX2 build differ in "
              "the last bit from what wan.c reproduces" % meta["cpu_capability"], file=sys.stderr)


if __name__ == "__main__":
    main()
