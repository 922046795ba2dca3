#!/usr/bin/env python3
"""Build the tiny Wan2.2 model folders used by wan.c's loader and numerics tests.

Writes (relative to the repository root):
  tests/fixtures/tiny-wan22-t2v/       diffusers layout, Wan2.2-T2V-A14B shaped (two experts, Wan2.1 VAE)
  tests/fixtures/tiny-wan22-ti2v/      diffusers layout, Wan2.2-TI2V-5B shaped (one expert, Wan2.2 VAE)
  tests/fixtures/tiny-wan22-t2v-orig/  the same t2v weights under the original Wan2.2 names/layout
  tests/fixtures/VERSIONS.json         library versions + sha256 of every file written

Everything runs on the CPU in float32 from fixed seeds, so a rerun with the pinned versions
(tools/ref/requirements.txt) reproduces the files byte for byte.  The SentencePiece model is trained
once and then reused from tools/ref/tiny_spiece.model (training output depends on the sentencepiece
version).

Usage:  tools/ref/.venv/bin/python tools/ref/make_fixtures.py [--no-verify]
"""

import argparse
import hashlib
import io
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
T2V_DIR = os.path.join(FIXTURES, "tiny-wan22-t2v")
TI2V_DIR = os.path.join(FIXTURES, "tiny-wan22-ti2v")
ORIG_DIR = os.path.join(FIXTURES, "tiny-wan22-t2v-orig")
SPIECE_CACHE = os.path.join(HERE, "tiny_spiece.model")
# vae_params_wan21.tsv (diffusers name -> original name) is a copy of the spec table kept next to this script
SPEC_DIR_CANDIDATES = [HERE, os.path.join(ROOT, "docs", "spec"), "/work/shared/spec"]

# ----------------------------------------------------------------------------------------------------------
# Seeds (every random draw in this script comes from one of these)
SEED_CORPUS = 1234          # python `random` for the tokenizer training corpus
SEED_T_HIGH = 0             # transformer   (high-noise expert)
SEED_T_LOW = 1              # transformer_2 (low-noise expert)
SEED_T_TI2V = 2             # TI2V-5B shaped transformer
SEED_TEXT = 3               # umT5 construction
SEED_TEXT_OVERRIDE = 4      # umT5 gains / relative-bias tables
SEED_VAE = 0                # AutoencoderKLWan construction
SEED_VAE_OVERRIDE = 1       # vae.md 9.2 step 2 parameter overwrite

# ----------------------------------------------------------------------------------------------------------
# Configs

# transformer.md section 7
TRANSFORMER_CFG = dict(
    patch_size=[1, 2, 2],
    num_attention_heads=2,
    attention_head_dim=32,
    in_channels=16,
    out_channels=16,
    text_dim=64,
    freq_dim=256,
    ffn_dim=128,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
    added_kv_proj_dim=None,
    rope_max_seq_len=1024,
    pos_embed_seq_len=None,
)

# text.md section 8.2
EXTRA_IDS = 10              # <extra_id_0..9>, appended in reverse order after the spm pieces
SPM_VOCAB = 600
TEXT_VOCAB = 640            # embedding rows: a little above the tokenizer size (600 + 10), multiple of 64
TEXT_CFG = dict(
    vocab_size=TEXT_VOCAB,
    d_model=64,
    d_kv=16,
    d_ff=96,
    num_layers=3,
    num_decoder_layers=3,
    num_heads=6,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.0,
    layer_norm_epsilon=1e-6,
    feed_forward_proj="gated-gelu",
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    scalable_attention=True,
    tie_word_embeddings=False,
)

# vae.md section 1.2 (Wan2.2 VAE, 48 channels)
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542,
    0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108,
    -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649,
    0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548,
    -0.1681, -0.0667,
]
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894,
    1.0901, 0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726,
    1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]
assert len(WAN22_LATENTS_MEAN) == 48 and len(WAN22_LATENTS_STD) == 48

# vae.md section 9.1
VAE_TINY21 = dict(
    base_dim=8,
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    temperal_downsample=[False, True, True],
)
VAE_TINY22 = dict(
    base_dim=8,
    decoder_base_dim=12,
    z_dim=48,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    temperal_downsample=[False, True, True],
    is_residual=True,
    in_channels=12,
    out_channels=12,
    patch_size=2,
    scale_factor_spatial=16,
    scale_factor_temporal=4,
    latents_mean=WAN22_LATENTS_MEAN,
    latents_std=WAN22_LATENTS_STD,
)


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------------------------------------
# Tokenizer

_EN = """a an the and or of to in on at with for from by under over near into through after before while
cat dog bird fish horse tiger panda robot astronaut girl boy woman man child old young small large tall
red blue green yellow white black golden silver purple orange pink brown gray bright dark soft
walks runs flies swims dances jumps sits sleeps eats drinks plays sings reads writes looks smiles
city street forest river mountain beach ocean sky cloud sun moon star rain snow wind fire water light
camera slowly quickly gently zoom pan shot close wide cinematic realistic detailed beautiful ancient modern
video frame scene motion background foreground portrait landscape night morning evening sunset sunrise
high quality 4k photo style painting anime cartoon film lens focus depth color texture shadow""".split()
_ZH = ("一个人在的是了不和有大这中上们到说时要就出也得里后自以会家可下而过天去能对小多然于心学么之都好看起发当没成"
       "只如事把还用第样道想作种开美总从无情已面最女但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间斯"
       "知世什两次使身者被高亲其进此话常与活正感见明问力理尔点文几定本公特做外孩相西果走将月十实向声车全信重三机工"
       "物气每并别真打太新比才便夫再书部水像眼等体却加电主界门利海受听表德少克代员许先口由死安写性马光白或住难望教"
       "命花结乐色更拉东神记处让母父应直字场平报友关放至张认接告入笑内英军候民岁往何度山觉路带万男边风解叫任金快原"
       "吃妈变通师立象数四失满战远格士音轻目条呢猫狗鸟鱼雨雪云森林城市河流湖街道夜晚阳视频镜头慢缓")
_KANA = [chr(c) for c in range(0x3042, 0x3094)] + [chr(c) for c in range(0x30A2, 0x30F4)]
_KANJI_JA = "日本語東京猫犬空海山川雨雪夜朝夕映画写真動画美少女桜花火"
_DIGITS = "0123456789"
_SYMBOLS = list(",.!?;:'\"()[]{}-_+=*/\\@#$%^&~<>|`，。！？、；：「」『』（）…—·")
_EMOJI = ([chr(c) for c in list(range(0x1F600, 0x1F650)) + list(range(0x1F300, 0x1F340))]
          + ["\u2764", "\u2600", "\u2728", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467"])


def _zipf(rng, seq, s):
    """Pick from seq with weight 1/(k+1)^s: a steep tail keeps rare characters under the 0.995 coverage."""
    return rng.choices(seq, weights=[1.0 / (k + 1) ** s for k in range(len(seq))], k=1)[0]


def make_corpus(n_lines=3000, seed=SEED_CORPUS):
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        kind = rng.random()
        if kind < 0.45:  # English-like prompt text with some punctuation and numbers
            parts = []
            for _ in range(rng.randint(4, 16)):
                w = _zipf(rng, _EN, 0.8)
                parts.append(w.capitalize() if rng.random() < 0.1 else w)
                if rng.random() < 0.08:
                    parts.append(_zipf(rng, _SYMBOLS[:10], 1.0))
                if rng.random() < 0.05:
                    parts.append(str(rng.randint(0, 2025)))
            line = " ".join(parts)
        elif kind < 0.75:  # Chinese with full-width punctuation
            line = "".join(_zipf(rng, _ZH, 2.0) if rng.random() > 0.08 else _zipf(rng, _SYMBOLS[-20:], 1.0)
                           for _ in range(rng.randint(6, 30)))
        elif kind < 0.9:  # Japanese kana + a few kanji
            line = "".join(_zipf(rng, _KANA, 1.9) if rng.random() > 0.2 else _zipf(rng, _KANJI_JA, 1.9)
                           for _ in range(rng.randint(5, 25)))
        else:  # mixed: digits, symbols, emoji, CJK
            bits = []
            for _ in range(rng.randint(3, 10)):
                r = rng.random()
                if r < 0.3:
                    bits.append(_zipf(rng, _EN, 0.8))
                elif r < 0.5:
                    bits.append("".join(rng.choice(_DIGITS) for _ in range(rng.randint(1, 6))))
                elif r < 0.7:
                    bits.append(_zipf(rng, _SYMBOLS, 0.7))
                elif r < 0.85:
                    bits.append(_zipf(rng, _EMOJI, 1.9))
                else:
                    bits.append(_zipf(rng, _ZH, 2.0) * rng.randint(1, 2))
            line = " ".join(bits)
        lines.append(line)
    return lines


def get_spiece_model():
    """Return the path of the tiny SentencePiece model; train it only if tools/ref/tiny_spiece.model is absent."""
    if os.path.isfile(SPIECE_CACHE):
        log(f"[tokenizer] reusing {os.path.relpath(SPIECE_CACHE, ROOT)}")
        return SPIECE_CACHE
    import sentencepiece as spm

    log("[tokenizer] training a new SentencePiece unigram model (no tiny_spiece.model found)")
    # Feed the corpus through an iterator and take the model as bytes, so that no temporary path ends up in
    # trainer_spec.input / model_prefix of the written model (retraining is then byte-identical).
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(make_corpus()),
        model_writer=model,
        model_type="unigram",
        vocab_size=SPM_VOCAB,
        character_coverage=0.995,
        byte_fallback=True,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        normalization_rule_name="nmt_nfkc",
        num_threads=1,
        minloglevel=1,
    )
    with open(SPIECE_CACHE, "wb") as f:
        f.write(model.getvalue())
    return SPIECE_CACHE


def write_tokenizer_dir(out_dir, spiece_path):
    """tokenizer/ = spiece.model + tokenizer.json + tokenizer_config.json + special_tokens_map.json.

    tokenizer.json is produced by transformers' own T5Converter (the converter that made the released umT5
    tokenizer.json) run on the SentencePiece model, then the unknown piece and the sentinel tokens are
    registered as special added tokens, as T5TokenizerFast.save_pretrained did in transformers v4.
    (transformers v5's T5Tokenizer(vocab_file=...) ignores the vocab file, and its from_pretrained rebuilds the
    backend with unk_id=2, so neither can be used to write the file; see tools/ref/README.md.)
    """
    import sentencepiece as spm
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import T5Converter

    class _SpmShim:  # what T5Converter reads from a "slow" tokenizer
        def __init__(self, path):
            self.vocab_file = path
            self._extra_ids = EXTRA_IDS
            self.legacy = True
            self._sp = spm.SentencePieceProcessor(model_file=path)

        def convert_tokens_to_ids(self, tok):
            return self._sp.piece_to_id(tok)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "byte fallback ... not implemented in the fast tokenizers"
        tk = T5Converter(_SpmShim(spiece_path)).converted()
    extra = [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]
    tk.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>"] + extra])

    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(spiece_path, os.path.join(out_dir, "spiece.model"))
    tk.save(os.path.join(out_dir, "tokenizer.json"), pretty=True)
    cfg = {
        "additional_special_tokens": extra,
        "eos_token": "</s>",
        "extra_ids": EXTRA_IDS,
        "legacy": True,
        "pad_token": "<pad>",
        "sp_model_kwargs": {},
        "tokenizer_class": "T5Tokenizer",
        "unk_token": "<unk>",
    }
    write_json(os.path.join(out_dir, "tokenizer_config.json"), cfg)
    stm = {"additional_special_tokens": extra, "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    write_json(os.path.join(out_dir, "special_tokens_map.json"), stm)
    return tk


# ----------------------------------------------------------------------------------------------------------
# Models


def build_transformer(seed, in_channels):
    from diffusers import WanTransformer3DModel

    cfg = dict(TRANSFORMER_CFG, in_channels=in_channels, out_channels=in_channels)
    torch.manual_seed(seed)
    model = WanTransformer3DModel(**cfg).eval()
    # transformer.md 7: perturb every parameter so norm gains != 1 and biases != 0 (a mis-mapped or ignored
    # tensor then changes the output).  randn_like draws from the global generator seeded above.
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def build_text_encoder():
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(SEED_TEXT)
    model = UMT5EncoderModel(UMT5Config(**TEXT_CFG)).eval()
    g = torch.Generator().manual_seed(SEED_TEXT_OVERRIDE)
    n_gain = n_bias = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):  # every T5LayerNorm (RMSNorm) gain, incl. final_layer_norm
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
                n_gain += 1
            elif name.endswith("relative_attention_bias.weight"):
                p.copy_(torch.randn(p.shape, generator=g))
                n_bias += 1
    assert n_gain == 2 * TEXT_CFG["num_layers"] + 1 and n_bias == TEXT_CFG["num_layers"], (n_gain, n_bias)
    return model


def build_vae(cfg):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(SEED_VAE)
    vae = AutoencoderKLWan(**cfg).eval()
    # vae.md 9.2 step 2, in named_parameters() order from one generator
    g = torch.Generator().manual_seed(SEED_VAE_OVERRIDE)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            n = torch.randn(p.shape, generator=g)
            if name.endswith(".gamma"):
                p.copy_(1.0 + 0.2 * n)
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(0.3 * n / fan_in ** 0.5)
            else:
                p.copy_(0.1 * n)
    return vae


def build_scheduler(flow_shift):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=flow_shift
    )


# ----------------------------------------------------------------------------------------------------------
# File helpers


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def patch_json(path, fn):
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    fn(obj)
    write_json(path, obj)


def save_sharded_safetensors(state_dict, out_dir, base, n_shards):
    """Write state_dict as n_shards files <base>-0000k-of-0000n.safetensors + <base>.safetensors.index.json,
    splitting the sorted tensor names into contiguous groups of roughly equal byte size."""
    from safetensors.torch import save_file

    names = sorted(state_dict)
    sizes = [state_dict[k].numel() * state_dict[k].element_size() for k in names]
    total = sum(sizes)
    groups, cur, acc = [], [], 0
    for k, s in zip(names, sizes):
        cur.append(k)
        acc += s
        if len(groups) < n_shards - 1 and acc >= total * (len(groups) + 1) / n_shards:
            groups.append(cur)
            cur = []
    groups.append(cur)
    assert len(groups) == n_shards and all(groups)
    weight_map = {}
    for i, grp in enumerate(groups):
        fname = f"{base}-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        save_file({k: state_dict[k].contiguous() for k in grp}, os.path.join(out_dir, fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in grp})
    write_json(os.path.join(out_dir, f"{base}.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})


# ----------------------------------------------------------------------------------------------------------
# Original (non-diffusers) names

_T_RENAMES = [  # diffusers -> original, applied in this order to the part after "blocks.N." or to the whole name
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("proj_out", "head.head"),
]
_T_BLOCK_RENAMES = [
    ("attn1.to_out.0.", "self_attn.o."),
    ("attn2.to_out.0.", "cross_attn.o."),
    ("attn1.to_", "self_attn."),
    ("attn2.to_", "cross_attn."),
    ("attn1.", "self_attn."),  # norm_q / norm_k
    ("attn2.", "cross_attn."),
    ("ffn.net.0.proj.", "ffn.0."),
    ("ffn.net.2.", "ffn.2."),
    ("norm2.", "norm3."),  # the affine cross-attention pre-norm (diffusers norm2 == original norm3)
    ("scale_shift_table", "modulation"),
]


def transformer_to_original_name(name):
    if name == "scale_shift_table":
        return "head.modulation"
    m = re.match(r"^(blocks\.\d+\.)(.*)$", name)
    if m:
        prefix, rest = m.groups()
        for a, b in _T_BLOCK_RENAMES:
            if rest.startswith(a):
                rest = b + rest[len(a):]
                break
        return prefix + rest
    for a, b in _T_RENAMES:
        if name.startswith(a + "."):
            return b + name[len(a):]
    if name.startswith("patch_embedding."):
        return name
    raise KeyError(f"no original name for transformer tensor {name}")


def transformer_original_state_dict(model):
    sd = {transformer_to_original_name(k): v.detach().clone() for k, v in model.state_dict().items()}
    assert len(sd) == len(model.state_dict())
    # Cross-check with diffusers' own original->diffusers converter.
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    back = convert_wan_transformer_to_diffusers(dict(sd))
    ref = model.state_dict()
    assert set(back) == set(ref), sorted(set(back) ^ set(ref))[:10]
    assert all(torch.equal(back[k], ref[k]) for k in ref)
    return sd


def wanmodel_config(cfg):
    return {
        "_class_name": "WanModel",
        "_diffusers_version": __import__("diffusers").__version__,
        "model_type": "t2v",
        "patch_size": list(cfg["patch_size"]),
        "text_len": 512,
        "in_dim": cfg["in_channels"],
        "dim": cfg["num_attention_heads"] * cfg["attention_head_dim"],
        "ffn_dim": cfg["ffn_dim"],
        "freq_dim": cfg["freq_dim"],
        "text_dim": cfg["text_dim"],
        "out_dim": cfg["out_channels"],
        "num_heads": cfg["num_attention_heads"],
        "num_layers": cfg["num_layers"],
        "window_size": [-1, -1],
        "qk_norm": True,
        "cross_attn_norm": cfg["cross_attn_norm"],
        "eps": cfg["eps"],
    }


def find_spec_file(name):
    for d in SPEC_DIR_CANDIDATES:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"{name} not found in {SPEC_DIR_CANDIDATES}")


def vae_original_state_dict(vae, tsv_name):
    names = {}
    with open(find_spec_file(tsv_name), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or line.startswith("diffusers_name"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 3:
                names[cols[0]] = cols[2]
    ref = vae.state_dict()
    assert set(names) == set(ref), sorted(set(names) ^ set(ref))[:10]
    sd = {names[k]: v.detach().clone() for k, v in ref.items()}
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    back = convert_wan_vae_to_diffusers(dict(sd))
    assert set(back) == set(ref), sorted(set(back) ^ set(ref))[:10]
    assert all(torch.equal(back[k], ref[k]) for k in ref)
    return sd


_UMT5_RENAMES = [
    (r"^shared\.weight$", "token_embedding.weight"),
    (r"^encoder\.final_layer_norm\.weight$", "norm.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.weight$", r"blocks.\1.norm1.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight$", r"blocks.\1.attn.\2.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.weight$",
     r"blocks.\1.pos_embedding.embedding.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.weight$", r"blocks.\1.norm2.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.weight$", r"blocks.\1.ffn.gate.0.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.weight$", r"blocks.\1.ffn.fc1.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.weight$", r"blocks.\1.ffn.fc2.weight"),
]


def umt5_original_state_dict(model):
    out = {}
    for k, v in model.state_dict().items():
        if k == "encoder.embed_tokens.weight":
            continue  # tied alias of shared.weight
        for pat, rep in _UMT5_RENAMES:
            if re.match(pat, k):
                out[re.sub(pat, rep, k)] = v.detach().clone()
                break
        else:
            raise KeyError(f"no original name for umT5 tensor {k}")
    assert len(out) == 2 + 10 * TEXT_CFG["num_layers"], len(out)
    return out


# ----------------------------------------------------------------------------------------------------------
# Folder writers


def save_diffusers_pipeline(out_dir, *, transformer, transformer_2, vae, text_encoder, tok_src_dir,
                            boundary_ratio, expand_timesteps, flow_shift, shard_transformer):
    from diffusers import WanPipeline
    from transformers import T5TokenizerFast

    tokenizer = T5TokenizerFast.from_pretrained(tok_src_dir)
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=build_scheduler(flow_shift),
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=boundary_ratio,
        expand_timesteps=expand_timesteps,
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)

    # tokenizer/: replace what transformers v5 writes (a rebuilt tokenizer.json with unk_id 2 and no
    # spiece.model) by the converter output, as in the released umT5 folder.
    tok_dir = os.path.join(out_dir, "tokenizer")
    shutil.rmtree(tok_dir)
    shutil.copytree(tok_src_dir, tok_dir)

    # text_encoder/: sharded, as released (loader test for model.safetensors.index.json)
    te_dir = os.path.join(out_dir, "text_encoder")
    shutil.rmtree(te_dir)
    text_encoder.save_pretrained(te_dir, safe_serialization=True, max_shard_size="100KB")

    # transformer/: sharded like the released experts (transformer_2 stays a single file: both cases covered)
    if shard_transformer:
        t_dir = os.path.join(out_dir, "transformer")
        shutil.rmtree(t_dir)
        transformer.save_pretrained(t_dir, safe_serialization=True, max_shard_size="200KB")

    def fix_index(obj):
        obj["tokenizer"] = ["transformers", "T5TokenizerFast"]  # the name the released folders use
    patch_json(os.path.join(out_dir, "model_index.json"), fix_index)
    return pipe


def write_original_layout(out_dir, t_high, t_low, vae, text_encoder):
    from safetensors.torch import save_file

    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    for sub, model, n_shards in (("high_noise_model", t_high, 2), ("low_noise_model", t_low, 1)):
        d = os.path.join(out_dir, sub)
        os.makedirs(d)
        write_json(os.path.join(d, "config.json"), wanmodel_config(dict(model.config)))
        sd = transformer_original_state_dict(model)
        if n_shards == 1:
            save_file(sd, os.path.join(d, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        else:
            save_sharded_safetensors(sd, d, "diffusion_pytorch_model", n_shards)
    save_file(vae_original_state_dict(vae, "vae_params_wan21.tsv"), os.path.join(out_dir, "Wan2.1_VAE.safetensors"),
              metadata={"format": "pt"})
    # umT5 encoder under the original Wan names, in bfloat16 like models_t5_umt5-xxl-enc-bf16.pth
    sd = {k: v.to(torch.bfloat16) for k, v in umt5_original_state_dict(text_encoder).items()}
    save_file(sd, os.path.join(out_dir, "models_t5_umt5-xxl-enc-bf16.safetensors"), metadata={"format": "pt"})


# ----------------------------------------------------------------------------------------------------------
# Versions / manifest


def library_versions():
    import diffusers
    import safetensors
    import sentencepiece
    import tokenizers
    import transformers
    import google.protobuf

    v = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "sentencepiece": sentencepiece.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "protobuf": google.protobuf.__version__,
    }
    try:
        import ftfy

        v["ftfy"] = ftfy.__version__
    except ImportError:
        v["ftfy"] = None
    return v


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_versions(versions):
    files = {}
    for d in (T2V_DIR, TI2V_DIR, ORIG_DIR):
        for dp, dn, fn in os.walk(d):
            dn.sort()
            for f in sorted(fn):
                p = os.path.join(dp, f)
                files[os.path.relpath(p, FIXTURES)] = {"bytes": os.path.getsize(p), "sha256": sha256(p)}
    info = {
        "generator": "tools/ref/make_fixtures.py",
        "device": "cpu",
        "dtype": "float32 (umT5 original-name copy and the ti2v VAE: bfloat16)",
        "seeds": {
            "corpus": SEED_CORPUS, "transformer": SEED_T_HIGH, "transformer_2": SEED_T_LOW,
            "ti2v_transformer": SEED_T_TI2V, "text_encoder": SEED_TEXT, "text_encoder_override": SEED_TEXT_OVERRIDE,
            "vae": SEED_VAE, "vae_override": SEED_VAE_OVERRIDE,
        },
        "spiece_model_sha256": sha256(SPIECE_CACHE),
        "versions": versions,
        "files": files,
    }
    write_json(os.path.join(FIXTURES, "VERSIONS.json"), info)
    return files


# ----------------------------------------------------------------------------------------------------------
# Verification (reads the folders back; writes nothing)


def verify():
    from diffusers import WanPipeline
    from tokenizers import Tokenizer

    log("\n[verify] tokenizer.json through the HF tokenizers core")
    core = Tokenizer.from_file(os.path.join(T2V_DIR, "tokenizer", "tokenizer.json"))
    for s in ("A cat walks on the beach at sunset", "一个女孩在雨中跳舞", "東京の夜 🐱 </s>"):
        enc = core.encode(s)
        log(f"  {s!r}: ids={enc.ids}")
        log(f"  {' ' * len(repr(s))}  tokens={enc.tokens}")
        assert enc.ids[-1] == 1
    assert core.encode("A cat walks on the beach").ids.count(3) == 0
    assert core.token_to_id("<unk>") == 3 and core.token_to_id("<pad>") == 0 and core.token_to_id("</s>") == 1

    # What WanPipeline itself gets: transformers' T5TokenizerFast.from_pretrained rebuilds the backend from the
    # vocab (v5 hard-codes unk_id=2), while PreTrainedTokenizerFast keeps tokenizer.json as stored.
    from transformers import PreTrainedTokenizerFast, T5TokenizerFast

    s = "东京 🐱🐶, a cat"
    t5_ids = T5TokenizerFast.from_pretrained(os.path.join(T2V_DIR, "tokenizer"))(s).input_ids
    ptf_ids = PreTrainedTokenizerFast.from_pretrained(os.path.join(T2V_DIR, "tokenizer"))(s).input_ids
    core_ids = core.encode(s).ids
    log(f"  {s!r}: core {core_ids} | PreTrainedTokenizerFast {ptf_ids} | T5TokenizerFast {t5_ids}")
    assert ptf_ids == core_ids
    if t5_ids != core_ids:
        log("  NOTE: T5TokenizerFast differs from tokenizer.json (unknown pieces -> id "
            f"{sorted(set(t5_ids) - set(core_ids))} instead of 3)")

    log("\n[verify] original-layout files against the diffusers folders (read from disk)")
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers, convert_wan_vae_to_diffusers
    from safetensors.torch import load_file

    def load_folder(d):
        idx = [f for f in os.listdir(d) if f.endswith(".safetensors.index.json")]
        if idx:
            with open(os.path.join(d, idx[0])) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        else:
            files = [f for f in os.listdir(d) if f.endswith(".safetensors")]
        sd = {}
        for f in files:
            sd.update(load_file(os.path.join(d, f)))
        return sd

    for orig_sub, diff_sub in (("high_noise_model", "transformer"), ("low_noise_model", "transformer_2")):
        conv = convert_wan_transformer_to_diffusers(load_folder(os.path.join(ORIG_DIR, orig_sub)))
        ref = WanTransformer3DModel.from_pretrained(os.path.join(T2V_DIR, diff_sub)).state_dict()
        assert set(conv) == set(ref) and all(torch.equal(conv[k], ref[k]) for k in ref), orig_sub
        log(f"  {orig_sub} == {diff_sub} ({len(ref)} tensors)")
    conv = convert_wan_vae_to_diffusers(load_file(os.path.join(ORIG_DIR, "Wan2.1_VAE.safetensors")))
    ref = AutoencoderKLWan.from_pretrained(os.path.join(T2V_DIR, "vae")).state_dict()
    assert set(conv) == set(ref) and all(torch.equal(conv[k], ref[k]) for k in ref)
    log(f"  Wan2.1_VAE.safetensors == vae ({len(ref)} tensors)")
    te = load_folder(os.path.join(T2V_DIR, "text_encoder"))
    ot = load_file(os.path.join(ORIG_DIR, "models_t5_umt5-xxl-enc-bf16.safetensors"))
    assert torch.equal(ot["token_embedding.weight"], te["shared.weight"].bfloat16())
    assert torch.equal(ot["blocks.2.ffn.gate.0.weight"], te["encoder.block.2.layer.1.DenseReluDense.wi_0.weight"].bfloat16())
    assert len(ot) == len(te)
    log(f"  models_t5_umt5-xxl-enc-bf16.safetensors == text_encoder in bf16 ({len(ot)} tensors)")

    def run(folder, height, width, expect_two):
        log(f"\n[verify] WanPipeline.from_pretrained({os.path.relpath(folder, ROOT)})")
        pipe = WanPipeline.from_pretrained(folder)
        assert (pipe.transformer_2 is not None) == expect_two
        calls = {"transformer": 0, "transformer_2": 0}

        def hook(name):
            def f(mod, args, kwargs, out):
                calls[name] += 1
            return f
        pipe.transformer.register_forward_hook(hook("transformer"), with_kwargs=True)
        if pipe.transformer_2 is not None:
            pipe.transformer_2.register_forward_hook(hook("transformer_2"), with_kwargs=True)
        out = pipe(
            prompt="A cat walks on the beach, 一个女孩",
            negative_prompt="",
            height=height, width=width, num_frames=5, num_inference_steps=2,
            guidance_scale=5.0,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="np",
        ).frames
        log(f"  frames {out.shape} {out.dtype} min {out.min():.4f} max {out.max():.4f} mean {out.mean():.4f}; "
            f"transformer calls {calls}; timesteps {pipe.scheduler.timesteps.tolist()}")
        assert out.shape == (1, 5, height, width, 3) and np.isfinite(out).all() and out.std() > 0
        if expect_two:
            assert calls["transformer"] > 0 and calls["transformer_2"] > 0
        # a reloaded expert must equal its file: compare a tensor against the other expert
        if expect_two:
            a = pipe.transformer.state_dict()["blocks.0.norm2.weight"]
            b = pipe.transformer_2.state_dict()["blocks.0.norm2.weight"]
            assert not torch.equal(a, b), "transformer and transformer_2 are identical"

    run(T2V_DIR, 32, 48, True)
    run(TI2V_DIR, 64, 96, False)


# ----------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-verify", action="store_true", help="skip loading the folders back and running them")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    versions = library_versions()
    log("[versions] " + json.dumps(versions))

    spiece = get_spiece_model()
    os.makedirs(FIXTURES, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = os.path.join(tmp, "tokenizer")
        tk = write_tokenizer_dir(tok_dir, spiece)
        log(f"[tokenizer] vocab {tk.get_vocab_size()} (spm {SPM_VOCAB} + {EXTRA_IDS} extra ids)")

        # t2v (Wan2.2-T2V-A14B shaped)
        t_high = build_transformer(SEED_T_HIGH, 16)
        t_low = build_transformer(SEED_T_LOW, 16)
        text_encoder = build_text_encoder()
        vae21 = build_vae(VAE_TINY21)
        save_diffusers_pipeline(T2V_DIR, transformer=t_high, transformer_2=t_low, vae=vae21,
                                text_encoder=text_encoder, tok_src_dir=tok_dir, boundary_ratio=0.875,
                                expand_timesteps=False, flow_shift=3.0, shard_transformer=True)
        log(f"[write] {os.path.relpath(T2V_DIR, ROOT)}")

        # the same t2v weights under the original Wan names
        write_original_layout(ORIG_DIR, t_high, t_low, vae21, text_encoder)
        log(f"[write] {os.path.relpath(ORIG_DIR, ROOT)}")

        # ti2v (Wan2.2-TI2V-5B shaped): same text side (rebuilt from the same seeds = identical weights)
        t_ti2v = build_transformer(SEED_T_TI2V, 48)
        vae22 = build_vae(VAE_TINY22)
        # stored in bfloat16 to keep the largest fixture file small (7.0 MB in float32): the values are rounded
        # first, so every reference computed from them in float32 sees exactly what the file holds
        with torch.no_grad():
            for p in vae22.parameters():
                p.copy_(p.bfloat16().float())
        save_diffusers_pipeline(TI2V_DIR, transformer=t_ti2v, transformer_2=None, vae=vae22,
                                text_encoder=build_text_encoder(), tok_src_dir=tok_dir, boundary_ratio=None,
                                expand_timesteps=True, flow_shift=5.0, shard_transformer=False)
        from safetensors.torch import load_file, save_file

        vae_file = os.path.join(TI2V_DIR, "vae", "diffusion_pytorch_model.safetensors")
        save_file({k: v.bfloat16().contiguous() for k, v in load_file(vae_file).items()}, vae_file,
                  metadata={"format": "pt"})
        log(f"[write] {os.path.relpath(TI2V_DIR, ROOT)} (VAE in bfloat16)")

    files = write_versions(versions)
    total = sum(v["bytes"] for v in files.values())
    log(f"[write] tests/fixtures/VERSIONS.json ({len(files)} files, {total / 1e6:.2f} MB in the three folders)")
    if total > 25e6:
        sys.exit(f"fixtures too large: {total} bytes > 25 MB")

    if not args.no_verify:
        verify()
        log("\n[verify] OK")


if __name__ == "__main__":
    main()
