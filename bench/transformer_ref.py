#!/usr/bin/env python3
"""PyTorch side of bench/transformer.c: one diffusers WanTransformer3DModel forward on the CPU with random
weights, the same config, token grid, text length (rows --prompt-len.. of the random context zeroed, as the
pipeline pads a prompt and as bench/transformer.c does) and thread count. Prints the best time of --reps runs as
`RESULT seconds S cpu_seconds C peak_rss_mb M` (the C bench parses that line).

--dtype f32 (default) runs fp32 weights and compute, the arithmetic wan.c does; --dtype bf16 runs the model
cast to bfloat16 (weights and activations), as a GPU pipeline would.
"""

import argparse
import os
import resource
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=5120)
    ap.add_argument("--heads", type=int, default=40)
    ap.add_argument("--ffn", type=int, default=13824)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--text-dim", type=int, default=4096)
    ap.add_argument("--in-channels", type=int, default=16)
    ap.add_argument("--grid", default="1,30,52")
    ap.add_argument("--text-len", type=int, default=512)
    ap.add_argument("--prompt-len", type=int, default=None, help="rows after this many are zero (default: none)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    f, h, w = (int(v) for v in a.grid.split(","))
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=a.heads, attention_head_dim=a.dim // a.heads,
        in_channels=a.in_channels, out_channels=a.in_channels, text_dim=a.text_dim, freq_dim=256, ffn_dim=a.ffn,
        num_layers=a.layers, cross_attn_norm=True, eps=1e-6, rope_max_seq_len=1024).eval()
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    if a.dtype == "bf16":
        model = model.to(dtype)
    x = torch.randn(1, a.in_channels, f, 2 * h, 2 * w, dtype=dtype)
    ctx = torch.randn(1, a.text_len, a.text_dim, dtype=dtype)
    if a.prompt_len is not None:
        ctx[:, a.prompt_len:] = 0
    t = torch.tensor([875], dtype=torch.int64)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.dtype}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params, tokens {f * h * w}", flush=True)
    best, best_cpu = float("inf"), 0.0
    with torch.inference_mode():
        for _ in range(a.reps):
            t0, c0 = time.perf_counter(), cpu_seconds()
            model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)
            dt, dc = time.perf_counter() - t0, cpu_seconds() - c0
            if dt < best:
                best, best_cpu = dt, dc
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"RESULT seconds {best:.4f} cpu_seconds {best_cpu:.4f} peak_rss_mb {rss:.0f}", flush=True)


if __name__ == "__main__":
    main()
