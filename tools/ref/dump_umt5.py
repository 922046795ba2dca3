#!/usr/bin/env python3
"""Reference tensors for the umT5 text encoder (tests/test_umt5.c).

Loads the committed tiny umT5 (tests/fixtures/tiny-wan22-t2v/text_encoder, fp32) and its bf16 copy under the
original Wan names (tests/fixtures/tiny-wan22-t2v-orig/models_t5_umt5-xxl-enc-bf16.safetensors), runs
transformers' UMT5EncoderModel on CPU and writes tests/fixtures/umt5/*.safetensors:

  cases_fp32.safetensors    fp32 model. For each case C (token ids drawn with a fixed seed, < vocab):
      C.input_ids [1,S] I64, C.attention_mask [1,S] I64  (real tokens first, last real one = </s> = 1, then <pad>)
      C.last_hidden_state [1,S,d]  raw encoder output (pad rows included)
      C.layer.N [1,S,d]            output of encoder block N (before the final norm), for debugging
      C.prompt_embeds [1,M,d]      WanPipeline._get_t5_prompt_embeds(max_sequence_length=M) on these ids:
                                   trimmed to the real length, zero-padded to M
  cases_bf16w.safetensors   the same (without layers) for an fp32 model holding the bf16-rounded weights of the
                            original-names file: the tight reference for that file
  cases_bf16.safetensors    C.prompt_embeds of a true bfloat16 run (dtype=torch.bfloat16), stored as F32: only for
                            the loose "how far is bf16 from fp32" numbers
  run_input.safetensors     input_ids/attention_mask of case s16, an input file for `wan run text-encoder`
  buckets.safetensors       relative_position [8191] I64 = -4095..4095 and bucket [8191] I64 from
                            UMT5Attention._relative_position_bucket (encoder, 32 buckets, max distance 128)
  prompts.safetensors       end-to-end WanPipeline.encode_prompt (real pipeline object, max_sequence_length 512):
                            P.text (UTF-8 bytes, U8), P.input_ids/P.attention_mask [1,512], P.prompt_embeds
                            [1,512,d] for English, Chinese, HTML-entity and the official negative prompt, and
                            empty.prompt_embeds (negative_prompt=None, i.e. "")

The pipeline helper is called with a stand-in tokenizer that returns the given ids, so the trimming and
zero-padding are diffusers' own code. Usage: tools/ref/.venv/bin/python tools/ref/dump_umt5.py
"""

import os
import re

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
T2V = os.path.join(FIX, "tiny-wan22-t2v")
TE_DIR = os.path.join(T2V, "text_encoder")
ORIG_FILE = os.path.join(FIX, "tiny-wan22-t2v-orig", "models_t5_umt5-xxl-enc-bf16.safetensors")
OUT = os.path.join(FIX, "umt5")
SEED = 20240601

# (name, S = padded length = max_sequence_length, L = real tokens incl. </s>)
CASES = [
    ("s16", 16, 10),       # short prompt with padding
    ("s16full", 16, 16),   # no padding at all
    ("s128", 128, 120),    # ~120 real tokens: |j-i| reaches 119, so every one of the 32 buckets is used
    ("s512", 512, 120),    # the pipeline's max_sequence_length
]
LAYER_CASES = {"s16", "s128"}

PROMPTS = [
    ("en", "A cat walks on the grass, realistic style, golden hour."),
    ("zh", "一只猫在草地上行走，写实风格。"),
    ("html", "  Tom &amp; Jerry &lt;3 &quot;cartoon&quot;\t\n  chase   scene &#x4e2d; &amp;amp; done  "),
    ("neg", "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
            "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
            "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"),
]

_ORIG_TO_HF = [
    (r"^token_embedding\.weight$", "shared.weight"),
    (r"^norm\.weight$", "encoder.final_layer_norm.weight"),
    (r"^blocks\.(\d+)\.norm1\.weight$", r"encoder.block.\1.layer.0.layer_norm.weight"),
    (r"^blocks\.(\d+)\.attn\.([qkvo])\.weight$", r"encoder.block.\1.layer.0.SelfAttention.\2.weight"),
    (r"^blocks\.(\d+)\.pos_embedding\.embedding\.weight$",
     r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias.weight"),
    (r"^blocks\.(\d+)\.norm2\.weight$", r"encoder.block.\1.layer.1.layer_norm.weight"),
    (r"^blocks\.(\d+)\.ffn\.gate\.0\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_0.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc1\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_1.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc2\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wo.weight"),
]


def orig_to_hf(name):
    for pat, rep in _ORIG_TO_HF:
        if re.match(pat, name):
            return re.sub(pat, rep, name)
    raise KeyError(f"unknown original umT5 tensor {name}")


class IdsTokenizer:
    """Stands in for the tokenizer inside WanPipeline._get_t5_prompt_embeds: returns the given ids/mask."""

    def __init__(self, ids, mask):
        self.ids, self.mask = ids, mask

    def __call__(self, prompt, padding, max_length, truncation, add_special_tokens, return_attention_mask,
                 return_tensors):
        assert max_length == self.ids.shape[1] and padding == "max_length"
        return type("Enc", (), {"input_ids": self.ids, "attention_mask": self.mask})()


def pipeline_embeds(text_encoder, tokenizer, prompt, max_len):
    from diffusers import WanPipeline

    stub = type("Stub", (), {})()
    stub.text_encoder = text_encoder
    stub.tokenizer = tokenizer
    stub._execution_device = torch.device("cpu")
    with torch.no_grad():
        return WanPipeline._get_t5_prompt_embeds(stub, prompt=prompt, max_sequence_length=max_len,
                                                 device=torch.device("cpu"))


def make_ids(vocab, S, L, gen):
    ids = torch.zeros(1, S, dtype=torch.long)
    ids[0, : L - 1] = torch.randint(2, vocab, (L - 1,), generator=gen)
    ids[0, L - 1] = 1
    mask = torch.zeros(1, S, dtype=torch.long)
    mask[0, :L] = 1
    return ids, mask


def run_cases(model, with_layers, prefix_ids=None):
    gen = torch.Generator().manual_seed(SEED)
    out = {}
    for name, S, L in CASES:
        ids, mask = make_ids(model.config.vocab_size, S, L, gen)
        if prefix_ids is not None:
            assert torch.equal(prefix_ids[name], ids)
        layers = []
        hooks = [blk.register_forward_hook(lambda m, a, o: layers.append(o[0] if isinstance(o, tuple) else o))
                 for blk in model.encoder.block]
        with torch.no_grad():
            hs = model(input_ids=ids, attention_mask=mask).last_hidden_state
        for h in hooks:
            h.remove()
        pe = pipeline_embeds(model, IdsTokenizer(ids, mask), "unused", S)
        assert torch.equal(pe[0, :L], hs[0, :L].to(pe.dtype)) and not pe[0, L:].any()
        out[f"{name}.input_ids"] = ids
        out[f"{name}.attention_mask"] = mask
        out[f"{name}.last_hidden_state"] = hs.float().contiguous()
        out[f"{name}.prompt_embeds"] = pe.float().contiguous()
        if with_layers and name in LAYER_CASES:
            assert len(layers) == len(model.encoder.block)
            for i, t in enumerate(layers):
                out[f"{name}.layer.{i}"] = t.float().contiguous()
    return out


def dump_prompts():
    """End-to-end WanPipeline.encode_prompt (max_sequence_length 512) of the real pipeline object, with the
    tokenizer that follows tokenizer.json (transformers 5's T5TokenizerFast does not; see README.md)."""
    from diffusers import WanPipeline
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(os.path.join(T2V, "tokenizer"))
    pipe = WanPipeline.from_pretrained(T2V, tokenizer=tok, torch_dtype=torch.float32)
    out = {}
    for name, text in PROMPTS:
        with torch.no_grad():
            pe, _ = pipe.encode_prompt(prompt=text, negative_prompt=None, do_classifier_free_guidance=False,
                                       max_sequence_length=512, device=torch.device("cpu"))
        enc = tok([prompt_clean(text)], padding="max_length", max_length=512, truncation=True,
                  add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        out[f"{name}.text"] = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)
        out[f"{name}.input_ids"] = enc.input_ids
        out[f"{name}.attention_mask"] = enc.attention_mask
        out[f"{name}.prompt_embeds"] = pe.float().contiguous()
        print(f"prompt {name}: {int(enc.attention_mask.sum())} tokens {enc.input_ids[0, :12].tolist()}")
    with torch.no_grad():  # negative_prompt=None -> "" (diffusers' default)
        _, ne = pipe.encode_prompt(prompt="x", negative_prompt=None, do_classifier_free_guidance=True,
                                   max_sequence_length=512, device=torch.device("cpu"))
    out["empty.prompt_embeds"] = ne.float().contiguous()
    return out


def main():
    from transformers import UMT5EncoderModel

    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    fp32 = UMT5EncoderModel.from_pretrained(TE_DIR, dtype=torch.float32).eval()
    cases = run_cases(fp32, with_layers=True)
    save_file(cases, os.path.join(OUT, "cases_fp32.safetensors"), metadata={"format": "pt"})
    ids = {n: cases[f"{n}.input_ids"] for n, _, _ in CASES}
    save_file({"input_ids": cases["s16.input_ids"], "attention_mask": cases["s16.attention_mask"]},
              os.path.join(OUT, "run_input.safetensors"), metadata={"format": "pt"})

    # fp32 model holding exactly the bf16 weights of the original-names file
    orig = load_file(ORIG_FILE)
    sd = {orig_to_hf(k): v.float() for k, v in orig.items()}
    ref_sd = fp32.state_dict()
    for k, v in sd.items():
        assert torch.equal(v, ref_sd[k].to(torch.bfloat16).float()), k
    bf16w = UMT5EncoderModel.from_pretrained(TE_DIR, dtype=torch.float32).eval()
    missing, unexpected = bf16w.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {"encoder.embed_tokens.weight"}, (missing, unexpected)
    assert torch.equal(bf16w.encoder.embed_tokens.weight, sd["shared.weight"])
    save_file(run_cases(bf16w, with_layers=False, prefix_ids=ids), os.path.join(OUT, "cases_bf16w.safetensors"),
              metadata={"format": "pt"})

    bf16 = UMT5EncoderModel.from_pretrained(TE_DIR, dtype=torch.bfloat16).eval()
    b = run_cases(bf16, with_layers=False, prefix_ids=ids)
    save_file({k: v for k, v in b.items() if k.endswith(".prompt_embeds")},
              os.path.join(OUT, "cases_bf16.safetensors"), metadata={"format": "pt"})

    attn = fp32.encoder.block[0].layer[0].SelfAttention
    rel = torch.arange(-4095, 4096, dtype=torch.long)
    save_file({"relative_position": rel, "bucket": attn._relative_position_bucket(rel).long()},
              os.path.join(OUT, "buckets.safetensors"), metadata={"format": "pt"})

    save_file(dump_prompts(), os.path.join(OUT, "prompts.safetensors"), metadata={"format": "pt"})

    for n, _, _ in CASES:
        a, r = b[f"{n}.prompt_embeds"], cases[f"{n}.prompt_embeds"]
        print(f"{n}: bf16 run vs fp32: max abs {float((a - r).abs().max()):.4g}, max|ref| {float(r.abs().max()):.4g}")
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
