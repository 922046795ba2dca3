#!/usr/bin/env python3
"""PyTorch side of bench/pipeline.c: one whole diffusers WanPipeline generation (tokenizer, umT5, the transformer
experts with CFG, UniPC, the VAE decode) on the CPU in float32, same model folder, prompt, size, frames, steps,
guidance, seed and thread count as the C side. Prints
`RESULT load_seconds L seconds S cpu_seconds C peak_rss_mb M process_seconds P` (bench/pipeline.c parses it) and, with --frames-out,
writes the frames as raw uint8 [F,H,W,3] (as export_to_video quantises them) for the C side to compare.
"""

import time

T_START = time.perf_counter()  # noqa: E402  (before the imports: the process total includes them)

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import WanPipeline  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tests/fixtures/tiny-wan22-t2v")
    ap.add_argument("--prompt", default="a red circle moves over the green grass")
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--frames-out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0, c0 = time.perf_counter(), cpu_seconds()
    tok = PreTrainedTokenizerFast.from_pretrained(os.path.join(a.model, "tokenizer"))
    pipe = WanPipeline.from_pretrained(a.model, tokenizer=tok, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - t0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, loaded in {load:.2f} s", flush=True)
    t0, c1 = time.perf_counter(), cpu_seconds()
    with torch.inference_mode():
        out = pipe(prompt=a.prompt, negative_prompt="", height=a.height, width=a.width, num_frames=a.frames,
                   num_inference_steps=a.steps, guidance_scale=a.guidance,
                   generator=torch.Generator("cpu").manual_seed(a.seed), output_type="np")
    secs, cpu = time.perf_counter() - t0, cpu_seconds() - c1
    frames = out.frames[0]
    if a.frames_out:
        (frames * 255).astype(np.uint8).tofile(a.frames_out)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"frames {list(frames.shape)}; load cpu {c1 - c0:.2f} s", flush=True)
    total = time.perf_counter() - T_START
    print(f"RESULT load_seconds {load:.4f} seconds {secs:.4f} cpu_seconds {cpu:.4f} peak_rss_mb {rss:.0f} "
          f"process_seconds {total:.4f}", flush=True)


if __name__ == "__main__":
    main()
