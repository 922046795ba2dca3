"""The synthetic "shapes" world: palette, captions (English and Chinese), clip renderer, train/held-out split,
and the prompt-adherence probe.

A clip is F frames of H x W RGB: one shape (circle, square, triangle) of a named colour on a plain named
background, moving left, right, up or down, or standing still. The probe (`probe`) reads a clip back into
(shape, colour, background, motion); tools/cli/cmd_eval.c implements the same probe in C, step for step, so
that `wan eval` and tools/shapes/eval_ref.py score identical frames identically. Keep the two in sync.
"""

import itertools
import random

import numpy as np

# Named colours (RGB). The probe classifies to the nearest of ALL of them (squared distance, ties: first).
PALETTE = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 210, 40),
    "white": (240, 240, 240),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
}
OBJECT_COLOURS = ["red", "green", "blue", "yellow", "white"]
BACKGROUNDS = ["black", "gray", "white", "blue", "green"]
SHAPES = ["circle", "square", "triangle"]
MOTIONS = ["left", "right", "up", "down", "still"]

ZH_COLOUR = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "white": "白色", "black": "黑色",
             "gray": "灰色"}
ZH_SHAPE = {"circle": "圆形", "square": "正方形", "triangle": "三角形"}
EN_MOTION = {"left": "moves to the left", "right": "moves to the right", "up": "moves up", "down": "moves down",
             "still": "stands still"}
ZH_MOTION = {"left": "向左移动", "right": "向右移动", "up": "向上移动", "down": "向下移动", "still": "静止不动"}

# Clip geometry: 64x64, 9 frames (4k+1: 3 latent frames of the Wan2.1 VAE), 16 fps.
HEIGHT, WIDTH, FRAMES = 64, 64, 9
RADIUS = (8.0, 11.0)   # half-size of the shape (px), uniform in this range
TRAVEL = (18.0, 26.0)  # total displacement over the clip (px) of a moving shape, uniform in this range
MARGIN = 3             # the shape never comes closer than this to the border (the probe reads the border)
SUPERSAMPLE = 4        # anti-aliasing: coverage on a 4x finer grid
# Motion trail of a moving shape: faint copies behind it, (offset as a fraction of the total displacement, opacity)
# each; () draws none. The probe's outline (half contrast) ignores copies fainter than 0.5.
TRAIL = ()

# Probe thresholds (same numbers in tools/cli/cmd_eval.c).
PROBE_DIFF = 120       # a pixel is "object" when sum |rgb - background| over channels exceeds this
PROBE_MIN_PIXELS = 12  # a frame with fewer object pixels has no centroid
PROBE_STILL = 6.0      # |displacement| (px) below which the object stands still
PROBE_TRIANGLE_LOW = 0.535  # relative centroid height in the box at or above which the shape is a triangle
PROBE_FILL_SQUARE = 0.88    # pixels / box area at or above which a non-triangle is a square

SEED_SPLIT = 20250        # held-out combination draw
HELDOUT_FRACTION = 0.1


def caption(lang, shape, colour, bg, motion):
    if lang == "en":
        return f"a {colour} {shape} {EN_MOTION[motion]} on a {bg} background"
    return f"{ZH_COLOUR[bg]}背景上，一个{ZH_COLOUR[colour]}{ZH_SHAPE[shape]}{ZH_MOTION[motion]}"


def all_combos():
    """Every (shape, colour, background, motion) with colour != background, in a fixed order."""
    return [(s, c, b, m) for s, c, b, m in itertools.product(SHAPES, OBJECT_COLOURS, BACKGROUNDS, MOTIONS) if c != b]


def split_combos():
    """(train, heldout): a fixed random 10% of the combinations is never trained on. Every attribute value and
    every (colour, background) pair still occurs in training (the held-out set only has new combinations)."""
    combos = all_combos()
    rng = random.Random(SEED_SPLIT)
    order = list(range(len(combos)))
    rng.shuffle(order)
    n_held = int(round(HELDOUT_FRACTION * len(combos)))
    held = set()
    for i in order:
        if len(held) == n_held:
            break
        s, c, b, m = combos[i]
        rest = [combos[j] for j in range(len(combos)) if j not in held and j != i]
        # keep every value of each attribute and every colour/background pair in training
        if not any(x[:1] == (s,) for x in rest) or not any(x[1:3] == (c, b) for x in rest):
            continue
        if not any(x[3] == m for x in rest):
            continue
        held.add(i)
    train = [combos[i] for i in range(len(combos)) if i not in held]
    heldout = [combos[i] for i in sorted(held)]
    return train, heldout


def _coverage(shape, cx, cy, r, H, W):
    """Fraction of each pixel covered by the shape centred at (cx, cy) with half-size r (pixels)."""
    S = SUPERSAMPLE
    ys = (np.arange(H * S) + 0.5) / S
    xs = (np.arange(W * S) + 0.5) / S
    X, Y = np.meshgrid(xs, ys)
    if shape == "circle":
        inside = (X - cx) ** 2 + (Y - cy) ** 2 <= r * r
    elif shape == "square":
        h = 0.9 * r
        inside = (np.abs(X - cx) <= h) & (np.abs(Y - cy) <= h)
    else:  # upward isosceles triangle, apex at the top
        h = 1.1 * r
        top, bottom = cy - h, cy + h
        t = (Y - top) / (bottom - top)  # 0 at the apex, 1 at the base
        inside = (Y >= top) & (Y <= bottom) & (np.abs(X - cx) <= t * h)
    return inside.reshape(H, S, W, S).mean(axis=(1, 3))


def render(shape, colour, bg, motion, rng, H=None, W=None, F=None):
    """One clip, uint8 [F, H, W, 3] (default: the module's HEIGHT, WIDTH, FRAMES at call time), with a random
    size, start position and speed drawn from `rng`."""
    H, W, F = H or HEIGHT, W or WIDTH, F or FRAMES
    r = rng.uniform(*RADIUS)
    dist = rng.uniform(*TRAVEL)  # total displacement over the clip
    dx, dy = {"left": (-dist, 0), "right": (dist, 0), "up": (0, -dist), "down": (0, dist), "still": (0, 0)}[motion]
    ext = 1.1 * r + MARGIN
    x0 = rng.uniform(ext + max(0.0, -dx), W - ext - max(0.0, dx))
    y0 = rng.uniform(ext + max(0.0, -dy), H - ext - max(0.0, dy))
    fg = np.array(PALETTE[colour], np.float64)
    bgc = np.array(PALETTE[bg], np.float64)
    out = np.empty((F, H, W, 3), np.uint8)
    for f in range(F):
        a = f / (F - 1)
        cov = _coverage(shape, x0 + a * dx, y0 + a * dy, r, H, W)[..., None]
        if motion != "still":
            for back, alpha in TRAIL:
                ghost = _coverage(shape, x0 + (a - back) * dx, y0 + (a - back) * dy, r, H, W)[..., None]
                cov = np.maximum(cov, alpha * ghost)
        out[f] = np.clip(np.rint(bgc * (1 - cov) + fg * cov), 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------------------
# Probe


def _nearest(rgb):
    best, best_d = None, None
    for name, p in PALETTE.items():
        d = sum((int(rgb[i]) - p[i]) ** 2 for i in range(3))
        if best_d is None or d < best_d:
            best, best_d = name, d
    return best


def _median_u8(values):
    """Lower median of uint8 values (the C probe takes it from a 256-bin histogram)."""
    hist = np.bincount(values, minlength=256)
    half = (len(values) + 1) // 2
    return int(np.searchsorted(np.cumsum(hist), half))


def probe(frames):
    """Reads (shape, colour, background, motion) back from uint8 frames [F, H, W, 3].

    background  per-channel lower median of the 2-pixel border ring over all frames -> nearest palette colour
    object      pixels with d = sum |rgb - background| > PROBE_DIFF; its colour is the per-channel lower median
                of the half of them farthest from the background (d >= their lower median d: the core, not the
                blurred rim) -> nearest palette colour
    outline     pixels with 2 d > contrast (= d of the object colour): the half-contrast edge, where a blurred
                edge still sits
    motion      outline centroid per frame (frames with >= PROBE_MIN_PIXELS pixels); the mean displacement of the
                last k against the first k centroids (k = min(3, n/2)): below PROBE_STILL px "still", else the
                dominant axis (image y grows downwards)
    shape       means over those frames of the centroid's relative height in the bounding box (an upward
                triangle carries its mass low: 0.65, circle and square 0.5) and of pixels / box area: triangle
                when the height >= PROBE_TRIANGLE_LOW, else square when the fill >= PROBE_FILL_SQUARE, else circle
    """
    frames = np.asarray(frames, np.uint8)
    F, H, W, _ = frames.shape
    border = np.zeros((H, W), bool)
    border[:2, :] = border[-2:, :] = True
    border[:, :2] = border[:, -2:] = True
    ring = frames[:, border, :]  # [F, n, 3]
    bg_rgb = [_median_u8(ring[..., ch].reshape(-1)) for ch in range(3)]
    bg = _nearest(bg_rgb)
    out = {"shape": None, "colour": None, "background": bg, "motion": None}

    diff = np.abs(frames.astype(np.int32) - np.array(bg_rgb, np.int32)).sum(axis=-1)
    mask = diff > PROBE_DIFF
    if mask.sum() == 0:
        return out
    d = np.sort(diff[mask])
    core = mask & (diff >= int(d[(len(d) + 1) // 2 - 1]))
    obj_rgb = [_median_u8(frames[core][:, ch]) for ch in range(3)]
    out["colour"] = _nearest(obj_rgb)
    contrast = sum(abs(obj_rgb[ch] - bg_rgb[ch]) for ch in range(3))
    outline = 2 * diff > contrast

    cxs, cys, fills, lows = [], [], [], []
    for f in range(F):
        ys, xs = np.nonzero(outline[f])
        n = len(xs)
        if n < PROBE_MIN_PIXELS:
            continue
        cx, cy = float(int(xs.sum())) / n, float(int(ys.sum())) / n
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        cxs.append(cx)
        cys.append(cy)
        fills.append(n / ((x1 - x0 + 1) * (y1 - y0 + 1)))
        lows.append((cy - y0 + 0.5) / (y1 - y0 + 1))
    if len(cxs) < 2:
        return out
    k = min(3, len(cxs) // 2)
    dx = dy = 0.0
    for i in range(k):
        dx += cxs[len(cxs) - k + i] - cxs[i]
        dy += cys[len(cys) - k + i] - cys[i]
    dx /= k
    dy /= k
    if max(abs(dx), abs(dy)) < PROBE_STILL:
        out["motion"] = "still"
    elif abs(dx) >= abs(dy):
        out["motion"] = "right" if dx > 0 else "left"
    else:
        out["motion"] = "down" if dy > 0 else "up"
    fill = low = 0.0
    for i in range(len(fills)):
        fill += fills[i]
        low += lows[i]
    fill /= len(fills)
    low /= len(lows)
    out["shape"] = "triangle" if low >= PROBE_TRIANGLE_LOW else "square" if fill >= PROBE_FILL_SQUARE else "circle"
    return out


ATTRIBUTES = ["colour", "background", "motion", "shape"]
