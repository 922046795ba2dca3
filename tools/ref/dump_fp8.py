#!/usr/bin/env python3
"""Reference tensors for float8 checkpoints (ComfyUI "fp8 scaled" files) of the Wan transformer.

ComfyUI and its model repackagers ship Wan2.x experts as single .safetensors files in the original Wan names, with
every linear weight stored as float8 and one float32 scale per tensor: value = float(w8) * scale. Two conventions:

  comfy_scaled_e4m3/  the older one: "model.diffusion_model." prefix, float8_e4m3fn weights, the scale in
                      "<module>.scale_weight" (a 0-dim float32), and a "scaled_fp8" marker tensor
  comfy_quant_e5m2/   the newer one (comfy_quant): no prefix, float8_e5m2 weights here, the scale in
                      "<module>.weight_scale", a "<module>.comfy_quant" uint8 JSON next to it; the time embedding's
                      weights are plain float8 with no scale (value = float(w8))

Each folder holds the file as diffusion_pytorch_model.safetensors beside the WanModel config.json of the tiny
original-layout fixture (a single file alone would get the real models' head_dim 128 inferred).

umt5_scaled_e4m3.safetensors is the tiny umT5 encoder (tests/fixtures/tiny-wan22-t2v/text_encoder) in transformers
names, its linear weights and token embedding float8_e4m3fn with "<module>.scale_weight", a "scaled_fp8" marker,
the relative attention biases and norms kept in float32, as ComfyUI's umt5_xxl_fp8_e4m3fn_scaled file.

Both are made from the committed tiny fixture transformer (tests/fixtures/tiny-wan22-t2v/transformer): every 2-D
weight is quantised as ComfyUI's converters do (scale = max|w| / max finite float8, w8 = (w / scale).to(float8)),
the rest (norms, modulation tables, biases, the patch embedding) is kept in float32.

reference.safetensors holds:
  sample_e4m3_scaled, sample_e5m2   diffusers' WanTransformer3DModel in float32 with the dequantised weights
                                    (float(w8) * scale), on the inputs of tests/fixtures/transformer/t2v_high
  umt5_e4m3_scaled                  transformers' UMT5EncoderModel in float32 with the dequantised weights:
                                    last_hidden_state of case s128 of tests/fixtures/umt5/cases_fp32
  e4m3fn_codes, e5m2_codes          float32 values of the 256 codes of each float8 format, as torch decodes them

Usage:  tools/ref/.venv/bin/python tools/ref/dump_fp8.py
"""

import json
import os
import shutil
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.pop("DIFFUSERS_ATTN_BACKEND", None)

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers  # noqa: E402
from transformers import UMT5EncoderModel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import transformer_original_state_dict  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "fp8")


def quantise(w, dtype):
    """ComfyUI's per-tensor scaling: (float8 values, float32 0-dim scale)."""
    fmax = torch.finfo(dtype).max
    scale = (w.abs().max() / fmax).float()
    w8 = (w / scale).clamp(-fmax, fmax).to(dtype)
    return w8, scale.reshape(())


def main():
    os.makedirs(OUT, exist_ok=True)
    model = WanTransformer3DModel.from_pretrained(os.path.join(FIX, "tiny-wan22-t2v", "transformer")).eval()
    orig = transformer_original_state_dict(model)  # original Wan names, float32
    inputs = load_file(os.path.join(FIX, "transformer", "t2v_high.safetensors"))

    files = {}
    deq = {}
    for tag, dtype in (("e4m3_scaled", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)):
        out, dq = {}, {}
        for name, w in orig.items():
            if w.ndim != 2 or not name.endswith(".weight"):
                out[name], dq[name] = w.contiguous(), w
                continue
            module = name[: -len(".weight")]
            if tag == "e5m2" and name.startswith("time_embedding."):  # plain float8, no scale
                w8 = w.to(dtype)
                out[name], dq[name] = w8, w8.float()
                continue
            w8, scale = quantise(w, dtype)
            out[name] = w8
            dq[name] = w8.float() * scale
            if tag == "e4m3_scaled":
                out[module + ".scale_weight"] = scale
            else:
                out[module + ".weight_scale"] = scale
                conf = json.dumps({"format": "float8_e5m2"}).encode()
                out[module + ".comfy_quant"] = torch.tensor(list(conf), dtype=torch.uint8)
        if tag == "e4m3_scaled":
            out = {"model.diffusion_model." + k: v for k, v in out.items()}
            out["model.diffusion_model.scaled_fp8"] = torch.zeros(2, dtype=dtype)
            fname = "comfy_scaled_e4m3"
        else:
            fname = "comfy_quant_e5m2"
        d = os.path.join(OUT, fname)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        save_file(out, os.path.join(d, "diffusion_pytorch_model.safetensors"))
        shutil.copy(os.path.join(FIX, "tiny-wan22-t2v-orig", "high_noise_model", "config.json"), d)
        files[tag] = fname
        deq[tag] = dq

    ref = {}
    for tag, dq in deq.items():
        sd = convert_wan_transformer_to_diffusers(dict(dq))
        m = WanTransformer3DModel.from_pretrained(os.path.join(FIX, "tiny-wan22-t2v", "transformer")).eval()
        m.load_state_dict(sd, strict=True)
        with torch.no_grad():
            y = m(hidden_states=inputs["hidden_states"], timestep=inputs["timestep"],
                  encoder_hidden_states=inputs["encoder_hidden_states"], return_dict=False)[0]
        ref["sample_" + tag] = y.float().contiguous()
        d = (y - inputs["sample"]).abs().max().item() / inputs["sample"].abs().max().item()
        print(f"{files[tag]}: sample differs from the float32 model's by {d:.3g} of max|ref|")
    # the umT5 encoder, transformers names
    te = UMT5EncoderModel.from_pretrained(os.path.join(FIX, "tiny-wan22-t2v", "text_encoder")).eval()
    sd = {k: v for k, v in te.state_dict().items() if k != "encoder.embed_tokens.weight"}  # tied to shared
    out, dq = {}, {}
    for name, w in sd.items():
        if w.ndim == 2 and name.endswith(".weight") and "relative_attention_bias" not in name:
            w8, scale = quantise(w, torch.float8_e4m3fn)
            out[name], dq[name] = w8, w8.float() * scale
            out[name[: -len(".weight")] + ".scale_weight"] = scale
        else:
            out[name], dq[name] = w.contiguous(), w
    out["scaled_fp8"] = torch.zeros(2, dtype=torch.float8_e4m3fn)
    save_file(out, os.path.join(OUT, "umt5_scaled_e4m3.safetensors"))
    te.load_state_dict(dq, strict=False)  # the tied embed_tokens follows shared
    cases = load_file(os.path.join(FIX, "umt5", "cases_fp32.safetensors"))
    with torch.no_grad():
        hs = te(input_ids=cases["s128.input_ids"], attention_mask=cases["s128.attention_mask"]).last_hidden_state
    ref["umt5_e4m3_scaled"] = hs.float().contiguous()
    d = (hs - cases["s128.last_hidden_state"]).abs().max().item() / cases["s128.last_hidden_state"].abs().max().item()
    print(f"umt5_scaled_e4m3.safetensors: last_hidden_state differs from the float32 model's by {d:.3g} of max|ref|")
    codes = torch.arange(256, dtype=torch.uint8)
    ref["e4m3fn_codes"] = codes.view(torch.float8_e4m3fn).float()
    ref["e5m2_codes"] = codes.view(torch.float8_e5m2).float()
    save_file(ref, os.path.join(OUT, "reference.safetensors"))
    print("reference.safetensors: " + ", ".join(f"{k}{list(v.shape)}" for k, v in sorted(ref.items())))


if __name__ == "__main__":
    main()
