"""Weight palettization (a k-means look-up table per tensor), simulated in numpy/torch.

Core ML's ``palettize_weights(mode="kmeans", granularity="per_tensor")`` replaces a weight by
2^n cluster centres and n-bit indices. The sensitivity analysis needs the same kind of error
without building a package per layer; this 1-D k-means (quantile start, Lloyd iterations) is
close to coremltools' (which runs scikit-learn's k-means on the same values).
"""

from __future__ import annotations

import numpy as np

from edgeport.core.vocabulary import PALETTE_SCHEMES

ITERATIONS = 12


def palette_bits(precision: str) -> int | None:
    """The index width of a ``palettize-N`` precision, or None for other precisions."""
    return PALETTE_SCHEMES.get(precision)


def kmeans_palettize(values: np.ndarray, bits: int, iterations: int = ITERATIONS) -> np.ndarray:
    """Return ``values`` with every element replaced by its nearest of 2^bits k-means centres
    (per tensor). Tensors with at most 2^bits distinct values come back unchanged."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    k = 2**bits
    if np.unique(flat).size <= k:
        return np.asarray(values, dtype=np.float32)
    centres = np.quantile(flat, (np.arange(k) + 0.5) / k)
    order = np.sort(flat)
    for _ in range(iterations):
        # Nearest centre by the midpoints between sorted centres (1-D k-means).
        centres = np.sort(centres)
        edges = (centres[1:] + centres[:-1]) / 2
        index = np.searchsorted(edges, order)
        sums = np.bincount(index, weights=order, minlength=k)
        counts = np.bincount(index, minlength=k)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        if np.allclose(updated, centres):
            break
        centres = updated
    centres = np.sort(centres)
    edges = (centres[1:] + centres[:-1]) / 2
    return centres[np.searchsorted(edges, flat)].reshape(np.shape(values)).astype(np.float32)


_CACHE: dict[tuple, object] = {}
_CACHE_SIZE = 8


def palettize_tensor(weight, bits: int):
    """Torch wrapper of :func:`kmeans_palettize` (same dtype and shape back).

    The sensitivity analysis asks for the same weight once per sample: the last few results are
    kept, keyed by the tensor's storage, shape and checksum.
    """
    import torch

    key = (weight.data_ptr(), tuple(weight.shape), bits, float(weight.double().sum()))
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = torch.from_numpy(kmeans_palettize(weight.detach().cpu().numpy(), bits)).to(weight.dtype)
    return _CACHE[key]
