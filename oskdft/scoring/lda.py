"""Linear discriminant analysis, as Kaldi's ``ivector-compute-lda --total-covariance-factor=0``.

The projection keeps the ``dim`` directions with the largest between- to within-speaker variance
ratio and scales them so that the within-speaker covariance becomes the identity. Both
covariances are utterance-weighted, as in Kaldi.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import scipy.linalg

from oskdft.scoring.ops import class_sums


class LDA:
    """``y = W (x - mean)`` with ``W`` of shape ``(dim, D)``.

    >>> rng = np.random.default_rng(0)
    >>> speakers = np.repeat(np.arange(50), 10)
    >>> x = rng.normal(size=(500, 4)) + 3 * rng.normal(size=(50, 4))[speakers] * [1, 1, 0, 0]
    >>> lda = LDA.fit(x, speakers, dim=2)
    >>> lda.transform.shape
    (2, 4)
    >>> bool(np.abs(lda.transform[:, 2:]).max() < 0.1)  # the noise-only dimensions are dropped
    True
    """

    def __init__(self, mean: np.ndarray, transform: np.ndarray):
        self.mean, self.transform = mean, transform

    @classmethod
    def fit(cls, x: np.ndarray, speakers: np.ndarray, dim: int) -> "LDA":
        """:param speakers: one label per row of ``x``; :param dim: output dimension (<= D)."""
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        centred = x - mean
        sums, counts = class_sums(centred, speakers)
        between = sums.T @ (sums / counts[:, None]) / len(x)
        within = centred.T @ centred / len(x) - between
        # A tiny ridge keeps `within` invertible when there are fewer utterances than dimensions.
        within += 1e-6 * np.trace(within) / len(within) * np.eye(len(within))
        # eigh solves between v = s within v with v' within v = 1, eigenvalues ascending.
        ratios, vectors = scipy.linalg.eigh(between, within)
        keep = np.argsort(ratios)[::-1][: min(dim, x.shape[1])]
        return cls(mean, vectors[:, keep].T)

    @classmethod
    def identity(cls, mean: np.ndarray) -> "LDA":
        """Centring only, for a back end configured without dimension reduction."""
        return cls(mean, np.eye(len(mean)))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.transform.T).astype(x.dtype)

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {"mean": self.mean, "transform": self.transform}
