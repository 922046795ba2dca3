#!/usr/bin/env python3
"""Reference token ids and cleaned prompts for the C tokenizer tests (tests/fixtures/tokenizer/).

Loads the committed tiny SentencePiece model (tests/fixtures/tiny-wan22-t2v/tokenizer/spiece.model) and its
tokenizer.json, builds tokenizer.json variants with transformers' own T5Converter (text.md §8.1), and encodes
a hand-written list of tricky strings plus seeded random hostile strings with the Hugging Face `tokenizers`
core (tokenizers.Tokenizer.from_file — the reference; transformers 5's T5TokenizerFast.from_pretrained ignores
the model section of tokenizer.json, see tools/ref/README.md). Prompt-cleaning references come from diffusers'
own pipeline_wan.prompt_clean, with ftfy (installed) and with ftfy switched off.

Writes:
  tok_bf1.json      byte_fallback true           (T5Converter with handle_byte_fallback, + <unk>/sentinels)
  tok_first.json    prepend_scheme "first"       (legacy False)
  tok_x0.json       no extra ids, no added <unk> (plain converter output, extra_ids 0)
  tok_old.json      older normalizer [Precompiled, Replace(" {2,}" -> " ")] without Strip
  tokens.safetensors  texts + ids per variant ("base" = the committed tokenizer.json), padded/truncated cases
  clean.safetensors   prompt_clean inputs and outputs

Run from the repository root: tools/ref/.venv/bin/python tools/ref/dump_tokenizer.py
"""
import json
import os
import random
import sys
import warnings

import numpy as np
import sentencepiece as spm
import tokenizers
import transformers
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, normalizers
from transformers.convert_slow_tokenizer import T5Converter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKDIR = os.path.join(ROOT, "tests/fixtures/tiny-wan22-t2v/tokenizer")
OUT = os.path.join(ROOT, "tests/fixtures/tokenizer")
SEED = 20250
N_RANDOM = 2000
EXTRA_IDS = 10


class _Shim:  # what T5Converter reads from a "slow" tokenizer
    def __init__(self, path, extra_ids, legacy):
        self.vocab_file = path
        self._extra_ids = extra_ids
        self.legacy = legacy
        self._sp = spm.SentencePieceProcessor(model_file=path)

    def convert_tokens_to_ids(self, tok):
        return self._sp.piece_to_id(tok)


class _T5ConverterBF(T5Converter):
    handle_byte_fallback = True


def convert(extra_ids=EXTRA_IDS, legacy=True, byte_fallback=False, specials=True):
    spiece = os.path.join(TOKDIR, "spiece.model")
    cls = _T5ConverterBF if byte_fallback else T5Converter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tk = cls(_Shim(spiece, extra_ids, legacy)).converted()
    if specials:  # as T5TokenizerFast (v4) registered them; the committed tokenizer.json has them
        extra = [f"<extra_id_{i}>" for i in range(extra_ids)]
        tk.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>"] + extra])
    return tk


def variants():
    base = Tokenizer.from_file(os.path.join(TOKDIR, "tokenizer.json"))
    old = convert()
    charsmap = json.loads(old.to_str())["normalizer"]["normalizers"][0]["precompiled_charsmap"]
    import base64

    old.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(base64.b64decode(charsmap)), normalizers.Replace(Regex(" {2,}"), " ")])
    return {
        "base": (base, None),
        "bf1": (convert(byte_fallback=True), "tok_bf1.json"),
        "first": (convert(legacy=False), "tok_first.json"),
        "x0": (convert(extra_ids=0, specials=False), "tok_x0.json"),
        "old": (old, "tok_old.json"),
    }


# ---------------------------------------------------------------------------------------------------------
# Strings

HAND = [
    "", " ", "   ", "\t\n", "a", "A cat walks on the grass, realistic style.",
    "A cat   walks  on the grass", "  leading and trailing  ", "trailing newline\n", "dog\n",
    "一只猫在草地上行走", "色调艳丽，过曝，静态，细节模糊不清，字幕", "東京の夜景、ネオンが光る。", "ひらがなカタカナ漢字",
    "한국어 문장입니다", "\u1100\u1161", "\u1100\u1161\u11a8", "ﾊﾟﾋﾟ", "ｶﾞｷﾞ",
    "Ｆｕｌｌ－ｗｉｄｔｈ　ＡＳＣＩＩ！", "ＡＢＣ１２３", "ﬁ ﬂ ﬃ ﬄ", "①②③ ⅷ ㎏ ㍻", "x² y³ ½ ¼",
    "cafe\u0301", "e\u0301\u0301", "Ａ\u0301", "a\u0308\u0304", "o\u0302\u0323", "\u0301leading mark",
    "ñ ñ Å Å", "Ǆ ǅ ǆ", "İstanbul ß ẞ", "ΑΒΓ αβγ ς", "Привет, мир", "مرحبا بالعالم", "שלום עולם",
    "नमस्ते क्षत्रिय", "ภาษาไทย", "ສະບາຍດີ", "ᄀᄁ", "😀", "🐱🐶", "👨‍👩‍👧‍👦 family", "👍🏽", "🏳️‍🌈", "🇯🇵🇺🇸",
    "❤️", "☺︎", "#️⃣ 1️⃣", "©®™", "a\u200db", "a\u200bb", "a\u00adb", "\ufeffBOM", "a\u2060b", "\u3000ideographic space",
    "tab\there", "cr\rlf\r\n", "\x00nul", "bell\x07", "esc\x1b[31mred\x1b[0m", "del\x7f", "c1\x80\x9f",
    "\u2028line\u2029para", "\u0085nel", "no-break\u00a0space", "thin\u2009space", "a" * 200,
    " " * 50 + "x" + " " * 50, "x" + "\u3000" * 10 + "y", "</s>", "a</s>b", "<pad><unk><s>", "<extra_id_0>",
    "text <extra_id_9> more", "<extra_id_10>", "<0x41>", "<0xFF><0x00>", "<0x4", "▁", "▁▁a", "a▁b", "▁ ▁",
    "&amp; &lt;tag&gt; &quot;q&quot; &#39;s", "&amp;lt;", "&notit; &notin; &not", "&#x80; &#0; &#128512;",
    "“smart” ‘quotes’ ʼ", "…ellipsis — dash – en", "€100 £5 ¥3", "0123456789", "3.14159 1,000,000",
    "http://example.com/path?q=1&r=2", "user@example.com", "C++ & C#", "(parens) [brackets] {braces}",
    "MiXeD CaSe WoRdS", "can't won't it's", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝", "ℌℑℜ", "㈱ ㊤", "\U0001F600\U0001F601",
    "\U000E0041 tag", "\uFFFD replacement", "\uE000 private", "\U0010FFFD", "\uFDD0", "\U0001F3FB alone",
    "Ωmega ohm Ω", "Kelvin K", "ℕ ℤ ℚ", "½ cup", "ＪＰＥＧ压缩残留", "画得不好的手部，畸形的",
    "A dog, a cat; and: a bird!", "Hello!!! ??? ...", "'single' \"double\"", "a\u0300\u0301\u0302\u0303\u0304",
    "\u0e01\u0e34\u0e4a", "\u0915\u094d\u0937", "\u0d4eabc", "\u0600\u0661", "\u1100\u1100\u1161\u11a8\u11a8",
    "\r\n", "\r", "x\u0308\r\n\u0308", "\u200d\u200d", "\ufe0f", "\U0001F1E6\U0001F1E6\U0001F1E6",
]


def long_prompts():
    rnd = random.Random(SEED + 1)
    words = ["a", "cat", "dog", "walks", "on", "the", "grass", "一只", "猫", "在", "草地", "上", "realistic",
             "style", "，", "。", "sunset", "over", "mountains", "東京", "夜景"]
    return [" ".join(rnd.choice(words) for _ in range(n)) for n in (300, 600, 1500)]


POOLS = [
    (0x20, 0x7E), (0x20, 0x7E), (0x20, 0x7E), (0x4E00, 0x4FFF), (0x3040, 0x30FF), (0xAC00, 0xAC40),
    (0x1100, 0x11FF), (0x0300, 0x036F), (0x0300, 0x036F), (0xFF01, 0xFFEF), (0x1F300, 0x1F6FF),
    (0x1F3FB, 0x1F3FF), (0x1F1E6, 0x1F1FF), (0x0900, 0x097F), (0x0E00, 0x0E7F), (0x0600, 0x06FF),
    (0x0000, 0x001F), (0x007F, 0x00A0), (0x00A0, 0x024F), (0x2000, 0x206F), (0x2100, 0x24FF),
    (0x3000, 0x303F), (0xFE00, 0xFE0F), (0xFB00, 0xFB4F), (0x0370, 0x04FF), (0x10000, 0x10FFFF),
]
SNIPPETS = ["</s>", "<pad>", "<unk>", "<s>", "<extra_id_3>", "<0x41>", "<0xe3>", "▁", "\u200d", "  ", "\t\t",
            "\u3000\u3000", "&amp;", "&#x41;", "&lt", "\r\n", "👨‍👩‍👧", "🇫🇷", "e\u0301", "ﾊﾟ", "，", "ﬁ"]


def random_string(rnd, vocab):
    parts = []
    for _ in range(rnd.randint(1, 12)):
        r = rnd.random()
        if r < 0.15:
            parts.append(rnd.choice(SNIPPETS))
        elif r < 0.35:
            parts.append(rnd.choice(vocab).replace("▁", rnd.choice([" ", "", "▁"])))
        elif r < 0.45:
            parts.append(" " * rnd.randint(1, 6))
        else:
            lo, hi = rnd.choice(POOLS)
            for _ in range(rnd.randint(1, 4)):
                cp = rnd.randint(lo, hi)
                if 0xD800 <= cp <= 0xDFFF:
                    cp = 0xFFFD
                parts.append(chr(cp))
    return "".join(parts)


INVALID_UTF8 = [b"abc\xff", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82x", b"\xf0\x9f\x98", b"\xed\xa0\x80",
                b"\xc0\xaf", b"\xf5\x80\x80\x80", b"\x80\x80", b"caf\xe9", b"\xf4\x90\x80\x80 x",
                b"\xe0\x80\x80", b"ok \xf0\x9f\x98\x80 \xf0\x9f"]


# ---------------------------------------------------------------------------------------------------------

def meta(**kw):
    # one key: safetensors writes several metadata keys in hash order, which would change the file bytes
    return {"info": json.dumps(kw, sort_keys=True)}


def pack_bytes(items):
    off = np.zeros(len(items) + 1, dtype=np.int64)
    for i, b in enumerate(items):
        off[i + 1] = off[i] + len(b)
    blob = np.frombuffer(b"".join(items), dtype=np.uint8).copy() if off[-1] else np.zeros(0, np.uint8)
    return blob, off


def pack_ids(lists):
    off = np.zeros(len(lists) + 1, dtype=np.int64)
    for i, ids in enumerate(lists):
        off[i + 1] = off[i] + len(ids)
    flat = np.array([x for ids in lists for x in ids], dtype=np.int16)
    return flat, off


def clean_refs(texts):
    from diffusers.pipelines.wan import pipeline_wan as pw
    from ftfy import fix_text

    assert pw.is_ftfy_available()
    rows_in, rows_ftfy, rows_plain = [], [], []
    excluded = 0
    for t in texts:
        if fix_text(t) != fix_text(t, fix_encoding=False):
            excluded += 1  # ftfy's heuristic mojibake repair fired: not reproduced in C (docs/MODEL.md)
            continue
        rows_in.append(t.encode())
        rows_ftfy.append(pw.prompt_clean(t).encode())
        rows_plain.append(None)
    saved = pw.is_ftfy_available
    pw.is_ftfy_available = lambda: False
    try:
        k = 0
        for t in texts:
            if fix_text(t) != fix_text(t, fix_encoding=False):
                continue
            rows_plain[k] = pw.prompt_clean(t).encode()
            k += 1
    finally:
        pw.is_ftfy_available = saved
    return rows_in, rows_ftfy, rows_plain, excluded


WAN_NEG = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
           "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，"
           "杂乱的背景，三条腿，背景人很多，倒着走")


CLEAN_EXTRA = [
    "&amp;amp;lt;", "&amp;amp;amp;amp;", "&AMP; &NTILDE; &Eacute; &EACUTE;", "&#59; &#x3B; &#65;", "&#65x; &#1;",
    "&#xD800; &#x110000; &#99999999999;", "&#x81; &#x9F; &#13;", "&ampx &amp &ampamp; &notit;", "&;&#;&#x;",
    "<b>&amp;</b>\n&amp;lt;", "line1 &amp;\nline2 <tag>\nline3 &amp;amp;", "a&lt;b &gt c",
    "\x1b[1;31mbold\x1b[0m", "\x1b[\u0661\u0662m arabic digits", "\x1b[x", "\x1c\x1d inner \x1e\x1f",
    " \x1c strip \x1f ", "\u200b zero \u200b", "a\u00adb", "ﬃ ﬄ Ĳ ŉ ǅ", "ＡＢＣ　ｘｙｚ ｶﾞ ﾟ ￣", "“quoted” ‚low‛ ʼ",
    "a\r\nb\rc\u2028d\u2029e\u0085f", "e\u0301 A\u030a \u1100\u1161\u11a8 \u0915\u093c", "\x80\x85\x9f",
    "\ufeffbom \u206a \ufff9\ufffc", "tabs\t\tand\n\nnewlines \u3000 \u00a0 \u2009 end", "  ",
    WAN_NEG,
    "Ã©", "â€™", "cafÃ©",
]


def main():
    os.makedirs(OUT, exist_ok=True)
    vs = variants()
    for name, (tk, fname) in vs.items():
        if fname:
            tk.save(os.path.join(OUT, fname), pretty=False)
            vs[name] = (Tokenizer.from_file(os.path.join(OUT, fname)), fname)
    base_conv = convert()
    vocab = [p for p, _ in json.loads(base_conv.to_str())["model"]["vocab"]]

    rnd = random.Random(SEED)
    texts = [s.encode() for s in HAND + long_prompts()]
    texts += [random_string(rnd, vocab).encode() for _ in range(N_RANDOM)]
    texts += INVALID_UTF8
    decoded = [t.decode("utf-8", "replace") for t in texts]
    for s in decoded[:len(HAND)]:
        assert base_conv.encode(s).ids == vs["base"][0].encode(s).ids, "converter output != committed file"

    tensors = {}
    tensors["text_bytes"], tensors["text_off"] = pack_bytes(texts)
    for name, (tk, _) in vs.items():
        tk.no_truncation()
        tk.no_padding()
        tensors["ids_" + name], tensors["ids_off_" + name] = pack_ids([tk.encode(s).ids for s in decoded])
    # padded/truncated like WanPipeline's tokenizer call (padding="max_length", truncation=True)
    sel = list(range(len(HAND) + 3))
    for L in (16, 512):
        tk = Tokenizer.from_file(os.path.join(TOKDIR, "tokenizer.json"))
        tk.enable_truncation(max_length=L)
        tk.enable_padding(length=L, pad_id=0, pad_token="<pad>")
        encs = [tk.encode(decoded[i]) for i in sel]
        tensors[f"pad{L}_ids"] = np.array([e.ids for e in encs], dtype=np.int16)
        tensors[f"pad{L}_mask"] = np.array([e.attention_mask for e in encs], dtype=np.uint8)
    tensors["pad_sel"] = np.array(sel, dtype=np.int64)
    save_file(tensors, os.path.join(OUT, "tokens.safetensors"),
              metadata=meta(tokenizers=tokenizers.__version__, transformers=transformers.__version__,
                            n_hand=len(HAND), n_long=3, n_random=N_RANDOM, n_invalid_utf8=len(INVALID_UTF8),
                            seed=SEED))

    crnd = random.Random(SEED + 2)
    pool = HAND + CLEAN_EXTRA + [random_string(crnd, vocab) for _ in range(500)]
    cin, cftfy, cplain, excluded = clean_refs(pool)
    c = {}
    c["in_bytes"], c["in_off"] = pack_bytes(cin)
    c["ftfy_bytes"], c["ftfy_off"] = pack_bytes(cftfy)
    c["plain_bytes"], c["plain_off"] = pack_bytes(cplain)
    save_file(c, os.path.join(OUT, "clean.safetensors"),
              metadata=meta(excluded_fix_encoding=excluded, n=len(cin)))
    assert WAN_NEG in pool
    n_ids = sum(len(tensors["ids_" + n]) for n in vs)
    print(f"{len(texts)} strings x {len(vs)} variants ({n_ids} ids), pad cases {len(sel)}; "
          f"clean: {len(cin)} strings ({excluded} excluded: ftfy fix_encoding fired)")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{OUT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
