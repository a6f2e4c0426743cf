"""Vectorised building blocks of the back ends: per-speaker sums, row-wise dot products."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import scipy.sparse


def class_sums(x: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Sum of the rows of ``x`` per label, and the number of rows per label.

    Labels are taken in sorted order (``np.unique``). The sums are one product with a sparse
    one-hot (labels x rows) matrix: no loop over speakers and no reordered copy of ``x``.

    >>> sums, counts = class_sums(np.array([[1.0], [2.0], [4.0]]), np.array(["b", "a", "b"]))
    >>> sums.ravel().tolist(), counts.tolist()
    ([2.0, 5.0], [1, 2])
    """
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    rows = np.arange(len(inverse))
    one_hot = scipy.sparse.csr_matrix(
        (np.ones(len(rows)), (inverse, rows)), shape=(len(counts), len(rows))
    )
    return np.asarray(one_hot @ x), counts


def rowwise_dot(
    a: np.ndarray, b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray, chunk: int = 32768
) -> np.ndarray:
    """``out[i] = a[rows_a[i]] . b[rows_b[i]]`` for every trial ``i``, as float64.

    Each embedding is prepared once per utterance; the trials only gather rows and take dot
    products, ``chunk`` trials at a time, so memory stays bounded however many trials there are.

    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> rowwise_dot(x, x, np.array([0, 1, 1]), np.array([1, 1, 0])).tolist()
    [0.6, 1.0, 0.6]
    """
    out = np.empty(len(rows_a), dtype=np.float64)
    for start in range(0, len(rows_a), chunk):
        part = slice(start, start + chunk)
        out[part] = np.einsum("ij,ij->i", a[rows_a[part]], b[rows_b[part]])
    return out
