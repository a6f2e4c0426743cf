"""Two-covariance PLDA in the form of Kaldi's ``ivector-compute-plda`` and ``ivector-plda-scoring``.

Model: an embedding is ``x = mean + y + e`` with the speaker variable ``y ~ N(0, B)`` shared by
all of a speaker's utterances and ``e ~ N(0, W)`` drawn per utterance. Training is Kaldi's EM
(``PldaEstimator``): start from ``W = B = I``; each iteration takes the posterior of every
speaker's ``y`` given its utterances and re-estimates both covariances. The model is stored as
Kaldi stores it: ``transform`` makes ``W`` the identity and ``B`` diagonal (``psi``, descending),
so scoring is a sum over independent dimensions.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import scipy.linalg

from oskdft.scoring.ops import class_sums, rowwise_dot


class PLDA:
    """A trained model: ``mean``, ``transform`` ``T`` and ``psi``, with ``T W T' = I`` and
    ``T B T' = diag(psi)``."""

    def __init__(self, mean: np.ndarray, transform: np.ndarray, psi: np.ndarray):
        self.mean, self.transform, self.psi = mean, transform, psi

    @classmethod
    def fit(cls, x: np.ndarray, speakers: np.ndarray, num_iters: int = 10) -> "PLDA":
        """EM on embeddings ``x`` (one row per utterance) with one speaker label per row.

        Speakers with a single utterance inform ``B`` only, as in Kaldi.
        """
        x = np.asarray(x, dtype=np.float64)
        dim = x.shape[1]
        sums, counts = class_sums(x, speakers)
        class_means = sums / counts[:, None]
        mean = class_means.mean(axis=0)  # every speaker weighs the same, as in Kaldi
        offsets = class_means - mean
        centred = x - mean
        # Scatter of the utterances around their speaker's mean: fixed across iterations.
        scatter = centred.T @ centred - (offsets * counts[:, None]).T @ offsets
        model = cls.from_covariances(mean, np.eye(dim), np.eye(dim))
        for _ in range(num_iters):
            # E step in the current model's diagonal space, where W = I and B = diag(psi): the
            # posterior of the speaker variable given n utterances with mean offset z has
            # covariance diag(psi / (1 + n psi)) and mean n psi / (1 + n psi) z. This is the
            # posterior Kaldi computes with full matrices, for all speakers at once.
            z = offsets @ model.transform.T
            post_var = model.psi / (1.0 + counts[:, None] * model.psi)
            post_mean = counts[:, None] * post_var * z
            residual = z - post_mean
            between_stats = np.diag(post_var.sum(axis=0)) + post_mean.T @ post_mean
            within_stats = np.diag(counts @ post_var) + (residual * counts[:, None]).T @ residual
            # M step, back in the embedding space.
            back = np.linalg.inv(model.transform)
            within = (scatter + back @ within_stats @ back.T) / len(x)
            between = back @ between_stats @ back.T / len(counts)
            model = cls.from_covariances(mean, _symmetric(within), _symmetric(between))
        return model

    @classmethod
    def from_covariances(cls, mean: np.ndarray, within: np.ndarray, between: np.ndarray) -> "PLDA":
        """Kaldi's ``PldaEstimator::GetOutput``: simultaneous diagonalisation of ``W`` and ``B``."""
        whiten = scipy.linalg.solve_triangular(
            np.linalg.cholesky(within), np.eye(len(within)), lower=True
        )
        psi, rotation = np.linalg.eigh(whiten @ between @ whiten.T)
        order = np.argsort(psi)[::-1]
        transform = rotation[:, order].T @ whiten
        return cls(mean, transform, np.maximum(psi[order], 0.0))

    @property
    def within_covariance(self) -> np.ndarray:
        inverse = np.linalg.inv(self.transform)
        return inverse @ inverse.T

    @property
    def between_covariance(self) -> np.ndarray:
        inverse = np.linalg.inv(self.transform)
        return inverse @ np.diag(self.psi) @ inverse.T

    def project(self, x: np.ndarray, normalize_length: bool = True) -> np.ndarray:
        """Map embeddings to the model's diagonal space (Kaldi's ``TransformIvector``, one
        utterance each).

        :param normalize_length: scale each vector so that its squared length, weighted by the
            inverse of its expected covariance ``psi + 1``, equals the dimension (Kaldi's
            ``--normalize-length=true`` default).
        """
        y = (np.asarray(x, dtype=np.float64) - self.mean) @ self.transform.T
        if normalize_length:
            y *= np.sqrt(len(self.psi) / ((y**2) @ (1.0 / (self.psi + 1.0))))[:, None]
        return y

    def llr(
        self, projected: np.ndarray, enrol_rows: np.ndarray, test_rows: np.ndarray
    ) -> np.ndarray:
        """Log-likelihood ratio same-speaker / different-speakers of every trial, vectorised.

        Kaldi's ``Plda::LogLikelihoodRatio`` for one enrolment utterance ``u`` and a test ``v``
        (per dimension, ``m = psi / (psi + 1)``)::

            log N(v; m u, 1 + m) - log N(v; 0, 1 + psi)

        expanded into a per-utterance quadratic term for each side plus a weighted dot product,
        so each trial costs one gathered dot product.

        :param projected: rows from :meth:`project`; ``enrol_rows``/``test_rows`` index them.
        """
        m = self.psi / (self.psi + 1.0)
        constant = 0.5 * float(np.sum(np.log1p(self.psi) - np.log1p(m)))
        squares = projected**2
        enrol_term = squares @ (-0.5 * m**2 / (1.0 + m))
        test_term = squares @ (0.5 / (1.0 + self.psi) - 0.5 / (1.0 + m))
        cross = rowwise_dot(projected * (m / (1.0 + m)), projected, enrol_rows, test_rows)
        return constant + enrol_term[enrol_rows] + test_term[test_rows] + cross

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {"mean": self.mean, "transform": self.transform, "psi": self.psi}


def _symmetric(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)
