"""Geometric check of near-duplicate candidates from small sources (CIFAR-10's 32 px).

Why a second signal there: at 32 px a 2-4 px crop or shift moves the content by 6-12 % of the
frame. That breaks the DCT hash, and the ImageNet features of the copy fall to a cosine of
0.6-0.75, where distinct photos of the same class also lie (benchmarks/RESULTS.md). So a candidate
pair whose features pass a low gate is checked pixel by pixel: one image's grey thumbnail, scaled
to 100-75 % (the crops) or cut to its centre (a shift of a same-sized frame), and mirrored, is
slid over the other, both ways round, and the best zero-mean normalised cross-correlation is the
pair's score. Both thumbnails are
high-passed first (minus a Gaussian blur of 2 px): that keeps the shot's own edges and drops the
layout that look-alikes share (a dark blob on a pale sky). A coarse pass at 16 px discards most
candidates at a quarter of the cost of the full one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIGMA = 2.0  # px at 32 px
FRACTIONS = (1.0, 15 / 16, 14 / 16, 13 / 16, 12 / 16)  # kept sizes: up to 4 px cropped per side
CENTRES = (14 / 16, 12 / 16)  # unscaled centre crops: translations of a same-sized frame
COARSE_MIN = 0.6  # 16 px pass; copies measured >= 0.69, most distinct pairs far below
CHUNK = 2048


def _high_pass(x: torch.Tensor) -> torch.Tensor:
    r = int(3 * SIGMA)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(t**2) / (2 * SIGMA**2))
    g = g / g.sum()
    b = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    b = F.conv2d(F.pad(b, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    return x - b


def _kernels(y: torch.Tensor, n: int, frac: float) -> list[torch.Tensor]:
    """y scaled to n px (a crop of the other image), plain and mirrored, and for CENTRES also its
    unscaled centre n x n (the other image shifted)."""
    size = y.shape[-1]
    scaled = F.interpolate(y, size=(n, n), mode="area") if n != size else y
    out = [scaled, scaled.flip(-1)]
    if frac in CENTRES:
        o = (size - n) // 2
        out += [y[..., o : o + n, o : o + n], y.flip(-1)[..., o : o + n, o : o + n]]
    return out


def _best_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(P, 1, S, S) each: the best normalised correlation of b (scaled or centre-cropped,
    mirrored) inside a and of a inside b, over every placement: one grouped convolution per
    kernel, one group per pair."""
    size, pairs = a.shape[-1], len(a)
    best = torch.full((pairs,), -1.0)
    for x, y in ((a, b), (b, a)):
        for frac in FRACTIONS:
            n = round(size * frac)
            if n == size and x is b:
                continue  # the whole frame: the same correlation both ways round
            m1 = F.avg_pool2d(x, n, stride=1)[:, 0]
            m2 = F.avg_pool2d(x * x, n, stride=1)[:, 0]
            spread = ((m2 - m1 * m1).clamp_min(0) * n * n).sqrt()
            for k in _kernels(y, n, frac):
                k = k - k.mean(dim=(2, 3), keepdim=True)
                num = F.conv2d(x.reshape(1, pairs, size, size), k, groups=pairs)[0]
                z = num / (spread * k.flatten(1).norm(dim=1)[:, None, None] + 1e-3)
                best = torch.maximum(best, z.flatten(1).max(dim=1).values)
    return best


@torch.no_grad()
def aligned_scores(thumbs: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """thumbs: float32 (n, 32, 32) grey. Each pair (i[k], j[k])'s score (-1 for pairs the coarse
    pass already ruled out)."""
    out = np.full(len(i), -1.0, np.float32)
    for s in range(0, len(i), CHUNK):
        a = _high_pass(torch.from_numpy(thumbs[i[s : s + CHUNK]])[:, None])
        b = _high_pass(torch.from_numpy(thumbs[j[s : s + CHUNK]])[:, None])
        coarse = _best_correlation(F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)).numpy()
        keep = np.flatnonzero(coarse >= COARSE_MIN)
        if len(keep):
            out[s + keep] = _best_correlation(a[keep], b[keep]).numpy()
    return out
