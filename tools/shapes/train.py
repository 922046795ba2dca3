#!/usr/bin/env python3
"""Train wan-tiny-shapes: a tiny text-to-video model of the real Wan2.2-T2V-A14B architecture (umT5 text encoder,
two WanTransformer3DModel experts split at boundary_ratio 0.875, the Wan2.1 z16 AutoencoderKLWan, UniPC) on the
synthetic shapes world of world.py, on the CPU with the diffusers/transformers classes themselves.

Stages (each logs its CPU seconds):
  1. tokenizer  a SentencePiece unigram model trained on the training captions (English + Chinese, every
                character covered, byte_fallback for anything else), converted to tokenizer.json as
                tools/ref/make_fixtures.py does for the fixtures
  2. vae        AutoencoderKLWan trained as an autoencoder (MSE + L1) on 32x32 crops, single frames then
                whole 9-frame clips; then every clip is encoded (posterior mean) and the per-channel latents_mean/std are set
  3. base       one transformer + the umT5 encoder trained jointly on all noise levels, flow matching as Wan:
                x_t = (1 - s) x0 + s e, target e - x0, timestep 1000 s, s drawn through the shift 3 map
  4. experts    the base copied twice and fine-tuned on s >= 0.875 (high noise: `transformer`) and s < 0.875
                (low noise: `transformer_2`); the text encoder is frozen here
  5. save       WanPipeline(...).save_pretrained(OUT) + the converter's tokenizer files (as the fixtures)

Prompts are padded to 512 as WanPipeline does (zero rows after the real tokens). Training runs the cross
attention on the real rows plus one zero row whose attention logit carries log(number of zero rows), which is
the same softmax (checked against the full 512 rows at start-up) at a third of the cost.

Usage: tools/ref/.venv/bin/python tools/shapes/train.py [--data build/shapes] [--out models/wan-tiny-shapes]
       [--vae-steps N] [--base-steps N] [--expert-steps N]   (after tools/shapes/make_data.py)
Deterministic on one thread (torch.use_deterministic_algorithms, fixed seeds).
"""

import argparse
import copy
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "ref"))
import world  # noqa: E402

SEED_VAE, SEED_BASE, SEED_HIGH, SEED_LOW, SEED_TEXT = 100, 200, 300, 400, 500
FLOW_SHIFT = 3.0
BOUNDARY = 0.875
MAX_LEN = 512          # WanPipeline's max_sequence_length
P_UNCOND = 0.1         # caption dropout (the empty prompt) for classifier-free guidance

SPM_VOCAB = 420
TEXT_CFG = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
                layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                decoder_start_token_id=0, scalable_attention=True, tie_word_embeddings=False)
DIT_CFG = dict(patch_size=[1, 2, 2], num_attention_heads=4, attention_head_dim=32, in_channels=16, out_channels=16,
               text_dim=64, freq_dim=256, ffn_dim=256, num_layers=4, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None,
               rope_max_seq_len=1024, pos_embed_seq_len=None)
VAE_CFG = dict(base_dim=12, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True])


class Clock:
    """CPU seconds (process time: what the one training thread used) and wall seconds per stage."""

    def __init__(self):
        self.c0, self.w0, self.stages = time.process_time(), time.time(), []

    def lap(self, name):
        c, w = time.process_time(), time.time()
        self.stages.append((name, c - self.c0, w - self.w0))
        log(f"[time] {name}: {c - self.c0:.1f} s CPU, {w - self.w0:.1f} s wall")
        self.c0, self.w0 = c, w

    def total(self):
        return sum(s[1] for s in self.stages), sum(s[2] for s in self.stages)


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------------------
# 1. Tokenizer


def world_words():
    """The words of the world's captions as unigram pieces: English with the word-start mark, Chinese as words."""
    en = {w for m in world.EN_MOTION.values() for w in m.split()}
    en |= set(world.PALETTE) | set(world.SHAPES) | {"a", "on", "background"}
    zh = set(world.ZH_COLOUR.values()) | set(world.ZH_SHAPE.values()) | {"背景上", "一个", "移动", "静止不动"}
    zh |= {m[:2] for k, m in world.ZH_MOTION.items() if k != "still"}  # 向左 向右 向上 向下
    return sorted("\u2581" + w for w in en) + sorted(zh)


def add_words(proto_bytes):
    """A SentencePiece unigram model with every word of world_words() as a piece of score 0 (learned pieces score
    below 0, so the Viterbi segmentation takes whole words wherever it can); other pieces keep their ids."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString(proto_bytes)
    have = {p.piece: p for p in m.pieces}
    for w in world_words():
        p = have.get(w)
        if p is None:
            p = m.pieces.add()
            p.piece, p.type = w, pb.ModelProto.SentencePiece.NORMAL
        p.score = 0.0
    return m.SerializeToString()


def train_tokenizer(captions, tok_dir, words=False):
    import sentencepiece as spm
    import make_fixtures

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions), model_writer=model, model_type="unigram", vocab_size=SPM_VOCAB,
        hard_vocab_limit=False, character_coverage=1.0, byte_fallback=True, pad_id=0, eos_id=1, bos_id=2,
        unk_id=3, normalization_rule_name="nmt_nfkc", num_threads=1, minloglevel=2)
    proto = add_words(model.getvalue()) if words else model.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spiece.model")
        with open(path, "wb") as f:
            f.write(proto)
        tk = make_fixtures.write_tokenizer_dir(tok_dir, path)
    return tk


class Tokens:
    """Prompt -> ids exactly as WanPipeline tokenizes (prompt_clean + the pipeline's tokenizer), cached."""

    def __init__(self, tok_dir):
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean
        from tokenizers import Tokenizer
        from transformers import T5TokenizerFast

        self.clean = prompt_clean
        self.tok = T5TokenizerFast.from_pretrained(tok_dir)
        self.core = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
        self.cache = {}

    def __call__(self, prompt):
        if prompt not in self.cache:
            ids = self.tok(self.clean(prompt), add_special_tokens=True).input_ids
            core = self.core.encode(self.clean(prompt)).ids  # what wan.c's tokenizer follows
            assert ids == core, (prompt, ids, core)
            assert 3 not in ids and 2 not in ids, (prompt, ids)  # no unknown pieces
            self.cache[prompt] = ids
        return self.cache[prompt]


def batch_ids(tokens, prompts):
    seqs = [tokens(p) for p in prompts]
    L = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), L, dtype=torch.long)
    mask = torch.zeros(len(seqs), L, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


# ---------------------------------------------------------------------------------------------------------
# Cross attention over the 512-row padded context, compressed


class PadState:
    bias = None  # [B, 1, 1, Lk] additive logits for the compressed context


class CompressedCrossAttn:
    """attn2 processor: the diffusers processor with an additive mask that weighs the one zero row as many."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        return self.inner(attn, hidden_states, encoder_hidden_states, PadState.bias, rotary_emb)


def compress_context(emb, mask):
    """emb [B, L, D] from the text encoder, mask [B, L] -> (context [B, L + 1, D] with zero rows after each
    prompt's tokens, bias [B, 1, 1, L + 1]): the zero rows stand for the 512 - n padding rows of WanPipeline."""
    B, L, D = emb.shape
    ctx = torch.cat([emb * mask[..., None].to(emb.dtype), emb.new_zeros(B, 1, D)], dim=1)
    n = mask.sum(dim=1)
    zeros = (L + 1 - n).to(torch.float64)
    bias = torch.zeros(B, L + 1, dtype=torch.float64)
    for i in range(B):
        bias[i, int(n[i]):] = math.log((MAX_LEN - int(n[i])) / zeros[i])
    return ctx, bias.to(emb.dtype)[:, None, None, :]


def use_compressed_attention(model, on):
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    for blk in model.blocks:
        blk.attn2.processor = CompressedCrossAttn(WanAttnProcessor()) if on else WanAttnProcessor()


def dit_forward(model, x, t, emb, mask):
    ctx, PadState.bias = compress_context(emb, mask)
    return model(x, t, ctx, return_dict=False)[0]


def check_compression(model, text_encoder, tokens):
    """The compressed cross attention equals WanPipeline's 512-row zero-padded context."""
    prompts = ["a red circle moves up on a black background", "黑色背景上，一个白色正方形静止不动", ""]
    ids, mask = batch_ids(tokens, prompts)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, 3, 8, 8, generator=g)
    t = torch.tensor([999.0, 500.0, 20.0])
    with torch.no_grad():
        emb = text_encoder(ids, mask).last_hidden_state
        use_compressed_attention(model, True)
        a = dit_forward(model, x, t, emb, mask)
        use_compressed_attention(model, False)
        full = torch.zeros(3, MAX_LEN, emb.shape[-1])
        for i in range(3):
            n = int(mask[i].sum())
            full[i, :n] = emb[i, :n]
        b = model(x, t, full, return_dict=False)[0]
    err = (a - b).abs().max().item()
    log(f"[check] compressed cross attention vs 512 padded rows: max |diff| {err:.2e}")
    assert err < 1e-4 * b.abs().max().item()


# ---------------------------------------------------------------------------------------------------------
# 2. VAE


def to_video(clips):
    """uint8 [B, F, H, W, 3] -> float [B, 3, F, H, W] in [-1, 1]."""
    return torch.from_numpy(np.array(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def init_vae(vae):
    """A per-frame autoencoder to start from: He-normal convolutions with zero biases, residual branches and
    attention outputs scaled by 0.1, causal 3D kernels with only the current-frame tap (the past taps zero, the
    current one scaled by sqrt(3) to keep the He variance), and the temporal resampling convolutions set to
    pass the current frame through (identity on the last tap), as the original Wan code initialises them.
    With PyTorch's default init the deep Wan VAE barely passes its input through and trains an order of
    magnitude slower; with random past taps, a model trained on single frames breaks on clips."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResample

    with torch.no_grad():
        for _, m in vae.named_modules():
            if isinstance(m, (torch.nn.Conv3d, torch.nn.Conv2d)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    m.bias.zero_()
            if isinstance(m, WanCausalConv3d) and m.weight.shape[2] == 3:
                m.weight[:, :, :2] = 0
                m.weight[:, :, 2] *= math.sqrt(3.0)
        for n, m in vae.named_modules():
            if n.endswith("conv2") or n.endswith("attentions.0.proj"):
                m.weight.mul_(0.1)
            if isinstance(m, WanResample) and hasattr(m, "time_conv"):
                w = m.time_conv.weight  # [out, in, 3, 1, 1]; out = 2 in (upsample: two frames) or in
                w.zero_()
                c = w.shape[1]
                for o in range(w.shape[0]):
                    w[o, o % c, 2, 0, 0] = 1.0


def vae_step(vae, opt, x, gen):
    """One autoencoder step: decode the posterior mean plus a little noise (robustness to the transformer's
    errors); MSE + L1 on pixels, a small pull of the latents towards 0 (keeps their scale near 1)."""
    post = vae.encode(x).latent_dist
    z = post.mean + 0.05 * torch.randn(post.mean.shape, generator=gen)
    y = vae.decode(z).sample
    rec = F.mse_loss(y, x) + 0.1 * F.l1_loss(y, x)
    loss = rec + 1e-3 * post.mean.pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    opt.step()
    return rec.item()


def train_vae(clips, image_steps, video_steps, lr=5e-4, crop=32):
    """Stage A: single frames (the first-frame path, 5x cheaper), batch 16; stage B: whole 9-frame clips (the
    causal temporal path), batch 8; both on random 32x32 crops at multiples of 8."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(SEED_VAE)
    vae = AutoencoderKLWan(**VAE_CFG)
    init_vae(vae)
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(SEED_VAE)
    gen = torch.Generator().manual_seed(SEED_VAE)
    H, W = clips.shape[2:4]
    steps = image_steps + video_steps
    avg = None
    for step in range(steps):
        video = step >= image_steps
        batch = 8 if video else 16
        idx = np.sort(rng.integers(0, len(clips), batch))
        oy, ox = rng.integers(0, (H - crop) // 8 + 1) * 8, rng.integers(0, (W - crop) // 8 + 1) * 8
        frames = slice(None) if video else slice(int(rng.integers(0, clips.shape[1])), None)
        x = to_video(clips[idx, frames, oy:oy + crop, ox:ox + crop][:, :None if video else 1])
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        rec = vae_step(vae, opt, x, gen)
        avg = rec if avg is None or step == image_steps else 0.95 * avg + 0.05 * rec
        if step % 50 == 0 or step == steps - 1 or step == image_steps - 1:
            log(f"[vae] step {step:5d} ({'video' if video else 'image'})  rec {rec:.5f}  avg {avg:.5f}")
    vae.eval()
    return vae


@torch.no_grad()
def encode_all(vae, clips, batch=16):
    mus = []
    for i in range(0, len(clips), batch):
        mus.append(vae.encode(to_video(clips[i:i + batch])).latent_dist.mean)
    return torch.cat(mus)  # [N, 16, T, h, w]


@torch.no_grad()
def vae_report(vae, clips, n=64):
    x = to_video(clips[:n])
    y = vae.decode(vae.encode(x).latent_dist.mean).sample
    frames = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 4, 1).numpy()
    ok = {a: 0 for a in world.ATTRIBUTES}
    truth = [world.probe(clips[i]) for i in range(n)]
    for i in range(n):
        p = world.probe(frames[i])
        for a in world.ATTRIBUTES:
            ok[a] += p[a] == truth[i][a]
    psnr = 10 * math.log10(4.0 / F.mse_loss(y, x).item())
    log(f"[vae] reconstruction of {n} clips: PSNR {psnr:.2f} dB; probe agreement "
        + ", ".join(f"{a} {ok[a]}/{n}" for a in world.ATTRIBUTES))


# ---------------------------------------------------------------------------------------------------------
# 3./4. Transformer


def sample_sigmas(n, lo, hi, gen):
    """sigma = shift(u) for u uniform in [lo, hi): the timesteps UniPC visits with flow_shift 3."""
    u = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    return (FLOW_SHIFT * u / (1 + (FLOW_SHIFT - 1) * u)).float()


def u_of_sigma(s):
    return s / (FLOW_SHIFT - (FLOW_SHIFT - 1) * s)


class Ema:
    def __init__(self, modules, decay):
        self.decay = decay
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step):
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self):
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)


def swapped_motion(cap, lang, rng):
    """The caption of `cap` (a clips.json entry) in `lang` with its motion replaced by another one, drawn from rng."""
    other = [m for m in world.MOTIONS if m != cap["motion"]]
    return world.caption(lang, cap["shape"], cap["colour"], cap["background"], other[int(rng.integers(0, len(other)))])


def object_masks(clips, captions, latent_shape, weight):
    """Per-clip loss weights on the latent grid [N, 1, T, h, w]: `weight` where the object is (pixels that differ
    from the caption's background, in any video frame the latent frame covers: frame 0, then groups of 4, pooled
    over each 8x8 block and dilated by one latent pixel), 1 elsewhere; each map scaled to mean 1."""
    N, _, T_, h, w = latent_shape
    F_, H, W = clips.shape[1:4]
    groups = [[0]] + [list(range(1 + 4 * (t - 1), min(F_, 1 + 4 * t))) for t in range(1, T_)]
    out = np.ones((N, 1, T_, h, w), np.float32)
    for i in range(N):
        bg = np.array(world.PALETTE[captions[i]["background"]], np.int32)
        obj = np.abs(clips[i].astype(np.int32) - bg).sum(-1) > 60  # [F, H, W]
        for t, frames in enumerate(groups):
            m = obj[frames].any(0).reshape(h, H // h, w, W // w).any(axis=(1, 3))
            d = m.copy()
            d[1:] |= m[:-1]
            d[:-1] |= m[1:]
            d[:, 1:] |= m[:, :-1]
            d[:, :-1] |= m[:, 1:]
            out[i, 0, t][d] = weight
        out[i] /= out[i].mean()
    return torch.from_numpy(out)


def frame_timesteps(model, sigma, x0):
    """Per-token timesteps [B, L] for per-frame noise levels sigma [B, T] (tokens run frame by frame)."""
    pt, ph, pw = model.config.patch_size
    per_frame = (x0.shape[3] // ph) * (x0.shape[4] // pw)
    return (sigma * 1000.0).repeat_interleave(per_frame, dim=1) if pt == 1 else None


def train_dit(name, model, text_encoder, tokens, x0_all, captions, steps, u_range, seed, lr, train_text, batch=32,
              contrast=0.0, margin=0.0, weights=None, frame_noise=0.0, every=0, callback=None, anchor=0.0):
    """Flow-matching steps on (model, text_encoder). With contrast > 0 each step adds a ranking term: the same
    x_t is also denoised under its caption with the motion swapped for another one, and every captioned sample
    pays contrast * max(0, (1 + margin) * loss(true caption) - loss(swapped caption)), so the caption's motion
    must explain x_t better than a wrong one (the plain loss gives that word almost no gradient).
    With frame_noise > 0 that fraction of the samples gets an independent noise level per latent frame (the
    transformer takes per-token timesteps, as Wan2.2 TI2V does), so that a clearer frame shows where the object
    is and the caption has to say where it goes in the others; the rest share one level, as in sampling.
    With anchor > 0 (and frame_noise > 0, whose branch draws it) that fraction of all samples has latent frame 0
    nearly clean (sigma in [0, 0.3]) and the others nearly pure noise (sigma in [0.97, 1]): where the object goes
    can then only come from the caption.
    With every > 0, callback(step) runs after every `every` steps (on the raw weights, not the EMA's)."""
    gen = torch.Generator().manual_seed(seed)
    frng = torch.Generator().manual_seed(seed + 2)
    crng = np.random.default_rng(seed + 1)
    rng = np.random.default_rng(seed)
    params = list(model.parameters()) + (list(text_encoder.parameters()) if train_text else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema = Ema([model, text_encoder] if train_text else [model], 0.999)
    model.train()
    text_encoder.train(train_text)
    text_encoder.requires_grad_(train_text)
    use_compressed_attention(model, True)
    warm = min(200, steps // 10 + 1)
    avg, gap, gap_avg = None, 0.0, 0.0
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(x0_all), batch))
        lang = rng.integers(0, 2, batch)
        drop = rng.random(batch) < P_UNCOND
        prompts = ["" if drop[i] else captions[idx[i]][("en", "zh")[lang[i]]] for i in range(batch)]
        x0 = x0_all[idx]
        sigma = sample_sigmas(batch, *u_range, gen)
        noise = torch.randn(x0.shape, generator=gen)
        s = sigma.view(-1, 1, 1, 1, 1)
        t_in = sigma * 1000.0
        if frame_noise > 0:
            nf = x0.shape[2]
            per = sample_sigmas(batch * nf, *u_range, frng).view(batch, nf)
            mixed = torch.rand(batch, generator=frng) < frame_noise
            per = torch.where(mixed[:, None], per, sigma[:, None].expand(batch, nf))
            if anchor > 0:
                pin = torch.rand(batch, generator=frng) < anchor
                anchored = torch.full((batch, nf), 0.97) + 0.03 * torch.rand(batch, nf, generator=frng)
                anchored[:, 0] = 0.3 * torch.rand(batch, generator=frng)
                per = torch.where(pin[:, None], anchored, per)
            s = per.view(batch, 1, nf, 1, 1)
            t_in = frame_timesteps(model, per, x0)
        xt = (1 - s) * x0 + s * noise
        ids, mask = batch_ids(tokens, prompts)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        emb = text_encoder(ids, mask).last_hidden_state
        pred = dit_forward(model, xt, t_in, emb, mask)
        target = noise - x0
        if weights is None:  # as the committed model was trained (bit for bit)
            wmap = torch.ones(batch, 1, *x0.shape[2:])
            loss = F.mse_loss(pred, target)
        else:
            wmap = weights[idx]
            loss = ((pred - target).pow(2) * wmap).mean()
        keep = np.nonzero(~drop)[0]
        if contrast > 0 and len(keep):
            wrong = [swapped_motion(captions[idx[i]], ("en", "zh")[lang[i]], crng) for i in keep]
            ids2, mask2 = batch_ids(tokens, wrong)
            emb2 = text_encoder(ids2, mask2).last_hidden_state
            k = torch.from_numpy(keep)
            pred2 = dit_forward(model, xt[k], t_in[k], emb2, mask2)
            l_true = ((pred[k] - target[k]).pow(2) * wmap[k]).mean(dim=(1, 2, 3, 4))
            l_wrong = ((pred2 - target[k]).pow(2) * wmap[k]).mean(dim=(1, 2, 3, 4))
            rank = F.relu((1 + margin) * l_true - l_wrong).mean()
            gap = (l_wrong - l_true).mean().item()
            loss = loss + contrast * rank
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if contrast > 0:
            gap_avg = gap if step == 0 else 0.98 * gap_avg + 0.02 * gap
        if every and (step + 1) % every == 0:
            callback(step + 1)
            model.train()
            use_compressed_attention(model, True)
        if step % 100 == 0 or step == steps - 1:
            log(f"[{name}] step {step:5d}  loss {loss.item():.4f}  avg {avg:.4f}"
                + (f"  wrong-motion gap {gap_avg:.4f}" if contrast > 0 else ""))
    ema.copy_to()
    use_compressed_attention(model, False)
    model.eval()
    text_encoder.eval()
    text_encoder.requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------------------------
# 5. Save


def store_vae_bf16(model_dir):
    """Rewrites model_dir's VAE weights in bfloat16, which halves the largest file of the committed model (5.6 MB
    in float32). The C engine and eval_ref.py (torch_dtype float32) both compute in float32 from these weights."""
    from safetensors.torch import load_file, save_file

    path = os.path.join(model_dir, "vae", "diffusion_pytorch_model.safetensors")
    sd = load_file(path)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, path, metadata={"format": "pt"})


def save_pipeline(out_dir, tok_dir, text_encoder, vae, t_high, t_low):
    from diffusers import UniPCMultistepScheduler, WanPipeline
    from transformers import T5TokenizerFast

    import make_fixtures

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=FLOW_SHIFT)
    pipe = WanPipeline(tokenizer=T5TokenizerFast.from_pretrained(tok_dir), text_encoder=text_encoder, vae=vae,
                       scheduler=scheduler, transformer=t_high, transformer_2=t_low, boundary_ratio=BOUNDARY)
    shutil.rmtree(out_dir, ignore_errors=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    shutil.rmtree(os.path.join(out_dir, "tokenizer"))
    shutil.copytree(tok_dir, os.path.join(out_dir, "tokenizer"))

    def fix_index(obj):
        obj["tokenizer"] = ["transformers", "T5TokenizerFast"]
    make_fixtures.patch_json(os.path.join(out_dir, "model_index.json"), fix_index)
    shutil.copyfile(os.path.join(HERE, "eval_prompts.tsv"), os.path.join(out_dir, "eval_prompts.tsv"))
    store_vae_bf16(out_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "build", "shapes"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "wan-tiny-shapes"))
    ap.add_argument("--vae-image-steps", type=int, default=600)
    ap.add_argument("--vae-video-steps", type=int, default=250)
    ap.add_argument("--base-steps", type=int, default=5000)
    ap.add_argument("--expert-steps", type=int, default=1200)
    ap.add_argument("--save-vae", default=None, help="also keep the trained VAE + latents here (for reruns)")
    ap.add_argument("--resume", default=None, help="start stage 3 from this model folder (use with --load-vae)")
    ap.add_argument("--only-vae", action="store_true",
                    help="stop after stage 2 (a pilot of the VAE; with --save-vae after encoding the clips and saving)")
    ap.add_argument("--load-vae", default=None, help="skip stage 2: load the VAE + latents saved by --save-vae")
    ap.add_argument("--keep-experts", action="store_true",
                    help="with --resume: start each expert from its own saved weights, not from the base")
    ap.add_argument("--high-steps", type=int, default=None, help="steps of the high-noise expert (default --expert-steps)")
    ap.add_argument("--low-steps", type=int, default=None, help="steps of the low-noise expert (default --expert-steps)")
    ap.add_argument("--batch", type=int, default=32, help="clips per transformer training step")
    ap.add_argument("--patch", default="1,2,2", help="the transformers' patch_size (frames, height, width)")
    ap.add_argument("--contrast", type=float, default=0.0,
                    help="weight of the wrong-motion ranking term (0: plain flow matching, as the committed model)")
    ap.add_argument("--contrast-margin", type=float, default=0.05,
                    help="relative margin of that term: a wrong motion must cost (1 + margin) x the true loss")
    ap.add_argument("--frame-noise", type=float, default=0.0,
                    help="base stage: fraction of samples with a noise level per latent frame (train_dit frame_noise)")
    ap.add_argument("--anchor", type=float, default=0.0,
                    help="base stage, with --frame-noise: fraction of samples with latent frame 0 nearly clean and the "
                         "others nearly pure noise, so that only the caption tells where the object goes (the toy "
                         "that first used the motion phrase: toy_motion.py --anchor)")
    ap.add_argument("--object-weight", type=float, default=1.0,
                    help="loss weight of the latent pixels the object covers, relative to the background (1: plain)")
    ap.add_argument("--vocab", choices=("learned", "words"), default="learned",
                    help="tokenizer pieces: as SentencePiece learns them from the captions (the committed model: "
                    "English nearly letter by letter), or those plus every word of the world as a piece")
    ap.add_argument("--only-tokenizer", default=None, metavar="DIR", help="write the tokenizer folder to DIR and stop")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (results depend on the count)")
    args = ap.parse_args()

    DIT_CFG["patch_size"] = [int(v) for v in args.patch.split(",")]
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    clock = Clock()
    import diffusers
    import transformers
    log(f"[versions] torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"transformers {transformers.__version__}; {args.threads} thread(s)")
    log(f"[config] vae {VAE_CFG}\n[config] text {TEXT_CFG}\n[config] transformer {DIT_CFG}")
    log(f"[config] steps: vae {args.vae_image_steps} image + {args.vae_video_steps} video, base {args.base_steps}, experts {args.expert_steps} each")

    clips = np.load(os.path.join(args.data, "clips.npy"), mmap_mode="r")
    with open(os.path.join(args.data, "clips.json"), encoding="utf-8") as f:
        captions = json.load(f)
    train_caps = sorted({c[k] for c in captions for k in ("en", "zh")})
    work = tempfile.mkdtemp(prefix="wan-shapes-")
    tok_dir = os.path.join(work, "tokenizer")
    tk = train_tokenizer(train_caps, tok_dir, words=args.vocab == "words")
    tokens = Tokens(tok_dir)
    n_tok = max(len(tokens(c)) for c in train_caps)
    log(f"[tokenizer] {tk.get_vocab_size()} entries; captions up to {n_tok} tokens; "
        f"e.g. {tokens(train_caps[0])} for {train_caps[0]!r}")
    clock.lap("tokenizer")
    if args.only_tokenizer:
        shutil.rmtree(args.only_tokenizer, ignore_errors=True)
        shutil.copytree(tok_dir, args.only_tokenizer)
        return

    if args.load_vae:
        from diffusers import AutoencoderKLWan
        vae = AutoencoderKLWan.from_pretrained(args.load_vae)
        cached = os.path.join(args.load_vae if args.save_vae is None else args.save_vae, "latents.pt")
        if os.path.exists(cached):
            mu = torch.load(cached)
        else:  # a VAE folder without its latents (e.g. a saved model's vae/): encode the clips once
            mu = encode_all(vae, clips)
            if args.save_vae:
                vae.save_pretrained(args.save_vae)
                torch.save(mu, cached)
    else:
        vae = train_vae(clips, args.vae_image_steps, args.vae_video_steps)
        clock.lap("vae training")
        vae_report(vae, np.ascontiguousarray(clips[-64:]))
        if args.only_vae and not args.save_vae:
            return
        mu = encode_all(vae, clips)
        if args.save_vae:
            vae.save_pretrained(args.save_vae)
            torch.save(mu, os.path.join(args.save_vae, "latents.pt"))
        if args.only_vae:  # with --save-vae: the VAE + latents that --load-vae reads (tools/shapes/anchor_chain.sh)
            shutil.rmtree(work)
            clock.lap("vae encode")
            return
    mean = mu.mean(dim=(0, 2, 3, 4))
    std = mu.std(dim=(0, 2, 3, 4))
    vae.register_to_config(latents_mean=[round(v, 6) for v in mean.tolist()],
                           latents_std=[round(v, 6) for v in std.tolist()])
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    x0_all = ((mu - mean) / std).contiguous()
    log(f"[vae] latents {tuple(mu.shape)}; per-channel std {[round(v, 3) for v in std.flatten().tolist()]}")
    clock.lap("vae encode")

    weights = None
    if args.object_weight != 1.0:
        weights = object_masks(clips, captions, tuple(x0_all.shape), args.object_weight)
        log(f"[loss] object pixels weigh {args.object_weight}x; object share of the latent "
            f"{float((weights > 1).float().mean()):.3f}")

    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(SEED_TEXT)
    vocab = (tk.get_vocab_size() + 63) // 64 * 64
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=vocab, **TEXT_CFG))
    torch.manual_seed(SEED_BASE)
    base = WanTransformer3DModel(**DIT_CFG)
    seed_base = SEED_BASE
    if args.resume:  # continue from a saved model: its text encoder, and the mean of its two experts as the base
        from safetensors.torch import load_file

        text_encoder.load_state_dict(load_file(os.path.join(args.resume, "text_encoder", "model.safetensors")),
                                     strict=False)
        sd = [load_file(os.path.join(args.resume, d, "diffusion_pytorch_model.safetensors"))
              for d in ("transformer", "transformer_2")]
        base.load_state_dict({k: 0.5 * (sd[0][k] + sd[1][k]) for k in sd[0]})
        resumed_experts = sd
        seed_base = SEED_BASE + 1
        log(f"[resume] text encoder and the mean of both experts from {args.resume}")
    check_compression(base, text_encoder, tokens)
    log(f"[config] text encoder {sum(p.numel() for p in text_encoder.parameters())} parameters (vocab {vocab}), "
        f"transformer {sum(p.numel() for p in base.parameters())}")
    train_dit("base", base, text_encoder, tokens, x0_all, captions, args.base_steps, (0.0, 1.0), seed_base, 5e-4,
              True, batch=args.batch, contrast=args.contrast, margin=args.contrast_margin, weights=weights,
              frame_noise=args.frame_noise, anchor=args.anchor)
    clock.lap("base transformer + text encoder")

    u_b = u_of_sigma(BOUNDARY)
    high_steps = args.expert_steps if args.high_steps is None else args.high_steps
    low_steps = args.expert_steps if args.low_steps is None else args.low_steps
    start_high, start_low = copy.deepcopy(base), copy.deepcopy(base)
    if args.resume and args.keep_experts:
        start_high.load_state_dict(resumed_experts[0])
        start_low.load_state_dict(resumed_experts[1])
        log("[resume] each expert starts from its own saved weights")
    t_high = train_dit("high", start_high, text_encoder, tokens, x0_all, captions, high_steps,
                       (u_b, 1.0), SEED_HIGH, 2e-4, False, batch=args.batch,
                       contrast=args.contrast, margin=args.contrast_margin, weights=weights)
    clock.lap("high-noise expert")
    t_low = train_dit("low", start_low, text_encoder, tokens, x0_all, captions, low_steps,
                      (0.0, u_b), SEED_LOW, 2e-4, False, batch=args.batch,
                      contrast=args.contrast, margin=args.contrast_margin, weights=weights)
    clock.lap("low-noise expert")

    save_pipeline(args.out, tok_dir, text_encoder, vae, t_high, t_low)
    shutil.rmtree(work)
    clock.lap("save")
    c, w = clock.total()
    log(f"[time] total {c:.1f} s CPU ({c / 60:.1f} min), {w:.1f} s wall; wrote {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
