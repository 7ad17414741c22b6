"""Similarity of two batches of saliency maps, for Adebayo et al. (2018)'s randomization test.

The randomization test asks whether a map changes when the model's weights are re-initialized;
it compares maps with maps (not maps with images). Per-image similarities:

- :func:`spearman`: Spearman rank correlation of ``|s|`` (scipy ``rankdata``, average ranks for
  ties, then Pearson), in [-1, 1].
- :func:`ssim`: scikit-image's ``structural_similarity`` of the maps scaled to [0, 1]
  (``|s| / max |s|``, ``data_range=1``), in [-1, 1].
- :func:`hog_similarity`: Pearson correlation of scikit-image ``hog`` descriptors of the same
  scaled maps, in [-1, 1].

With ``absolute=False`` each compares the signed maps instead (Adebayo et al. report both): ranks
of ``s``, and ``s / max |s|`` in [-1, 1] (SSIM with ``data_range=2``).

Where a similarity is undefined (a constant map has no rank or HOG variance), it is 0.0 unless
the two maps are identical, when it is 1.0. The randomization test itself
(:func:`rvi.scoring.controls.randomization_similarity`) re-initializes the layers of a deep copy of the
model and compares each image's randomized map with its original map through these functions.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch
from scipy.stats import rankdata

#: scikit-image ``hog`` settings used by :func:`hog_similarity` (7 x 7 cells on a 28 x 28 map).
HOG_SETTINGS = {"orientations": 9, "pixels_per_cell": (4, 4), "cells_per_block": (2, 2)}


def spearman(a: torch.Tensor, b: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """Spearman rank correlation of ``|a|`` and ``|b|`` (``absolute=False``: of ``a`` and ``b``)
    per image (ties get average ranks).

    Shape:
        a, b: (N, C, H, W) float, finite, same shape. Returns (N,) float64 in [-1, 1] (CPU).
    """
    x, y = (np.abs(m) if absolute else m for m in _check_pair(a, b))
    rx = rankdata(x, axis=1)
    ry = rankdata(y, axis=1)
    return torch.from_numpy(_pearson_rows(rx, ry, x, y))


def ssim(a: torch.Tensor, b: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """Structural similarity (scikit-image, default 7 x 7 window, ``data_range=1``) of the
    maps scaled to [0, 1] as ``|s| / max |s|`` (an all-zero map stays zero), per image; channels
    are summed first.

    Shape:
        a, b: (N, C, H, W) float, finite, same shape, H and W >= 7. Returns (N,) float64 (CPU).
    """
    from skimage.metrics import structural_similarity

    x, y = (_scaled(m) for m in _check_pair(a, b, flat=False, min_side=7, absolute=absolute))
    span = 1.0 if absolute else 2.0
    return torch.tensor([structural_similarity(p, q, data_range=span) for p, q in zip(x, y)],
                        dtype=torch.float64)


def hog_similarity(a: torch.Tensor, b: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """Pearson correlation of the HOG descriptors (scikit-image ``hog`` with
    :data:`HOG_SETTINGS`) of the maps scaled to [0, 1], per image; channels are summed first.
    A map described recently is not described again (:func:`_hog_rows`).

    Shape:
        a, b: (N, C, H, W) float, finite, same shape, H and W >= 8. Returns (N,) float64 (CPU).
    """
    side = HOG_SETTINGS["pixels_per_cell"][0] * HOG_SETTINGS["cells_per_block"][0]
    x, y = (_scaled(m) for m in _check_pair(a, b, flat=False, min_side=side, absolute=absolute))
    hx, hy = _hog_rows(x), _hog_rows(y)
    return torch.from_numpy(_pearson_rows(hx, hy, hx, hy))


#: HOG descriptors of the last :data:`_HOG_MEMO_SIZE` scaled maps described, keyed by the map's
#: shape and bytes: the randomization test compares every step's maps with the same trained
#: maps, and its floor compares the step's maps again in another order.
_HOG_MEMO: OrderedDict = OrderedDict()
_HOG_MEMO_SIZE = 4096


def _hog_rows(scaled: np.ndarray) -> np.ndarray:
    """(N, H, W) float64 scaled maps -> (N, D) HOG descriptors, each computed once while it is
    among the memo's most recent."""
    from skimage.feature import hog

    rows = []
    for one in scaled:
        key = (one.shape, hashlib.blake2b(one.tobytes(), digest_size=16).digest())
        row = _HOG_MEMO.get(key)
        if row is None:
            row = _HOG_MEMO[key] = hog(one, **HOG_SETTINGS)
            if len(_HOG_MEMO) > _HOG_MEMO_SIZE:
                _HOG_MEMO.popitem(last=False)
        else:
            _HOG_MEMO.move_to_end(key)
        rows.append(row)
    return np.stack(rows)


SIMILARITIES = {"spearman": spearman, "ssim": ssim, "hog": hog_similarity}


# --- helpers ----------------------------------------------------------------------------------

def _check_pair(a, b, flat: bool = True, min_side: int = 1, absolute: bool = True) -> tuple:
    for name, m in (("a", a), ("b", b)):
        if not isinstance(m, torch.Tensor) or m.ndim != 4 or not m.is_floating_point():
            got = f"{m.dtype} of shape {tuple(m.shape)}" if isinstance(m, torch.Tensor) else repr(m)
            raise ValueError(f"{name} must be a float tensor of shape (N, C, H, W), got {got}")
        if not torch.isfinite(m).all():
            raise ValueError(f"{name} must be finite, got NaN or infinite values")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if min(a.shape[2:]) < min_side:
        raise ValueError(f"maps must be at least {min_side} x {min_side} pixels, got "
                         f"{tuple(a.shape[2:])}")
    x = a.detach().cpu().double().numpy()
    y = b.detach().cpu().double().numpy()
    if flat:
        return x.reshape(len(x), -1), y.reshape(len(y), -1)
    if absolute:
        return np.abs(x).sum(1), np.abs(y).sum(1)
    return x.sum(1), y.sum(1)


def _scaled(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) maps divided by their largest absolute value (all-zero maps stay zero)."""
    peak = np.abs(maps).reshape(len(maps), -1).max(1)[:, None, None]
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def _pearson_rows(x: np.ndarray, y: np.ndarray, raw_x: np.ndarray, raw_y: np.ndarray
                  ) -> np.ndarray:
    """Row-wise Pearson correlation; 1.0 for identical raw rows, 0.0 where a row is constant."""
    xc = x - x.mean(1, keepdims=True)
    yc = y - y.mean(1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))
    r = np.divide((xc * yc).sum(1), denom, out=np.zeros(len(x)), where=denom > 0)
    same = (raw_x == raw_y).all(1)
    return np.clip(np.where(same, 1.0, r), -1.0, 1.0)
