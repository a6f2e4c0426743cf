"""Scoring back ends, registered under the names ``eval.backends`` uses.

Every back end prepares each utterance once (normalise, project, cohort statistics) and then
scores all trials together with gathered row-wise dot products (:func:`rowwise_dot`): there is
no Python loop over trials.

- ``cosine``: cosine similarity of the full-utterance embeddings.
- ``cosine_mean``: the same after subtracting the mean of the back-end (training) set.
- ``plda``: mean, LDA to ``eval.lda_dim``, length normalisation, then two-covariance PLDA, as in
  Kaldi's VoxCeleb recipe.
- ``asnorm``: adaptive symmetric normalisation of ``cosine_mean`` with a cohort of training-speaker
  mean embeddings, keeping the ``eval.asnorm_top_n`` closest of them per utterance.
- ``fused``: the paper's score, half the full-utterance cosine and half the mean of the cosines
  of all crop pairs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Dict, Optional, Tuple, TypeVar

import numpy as np

from oskdft.config import SCORING_BACKENDS, EvalConfig
from oskdft.scoring.embeddings import Embeddings, length_normalize
from oskdft.scoring.lda import LDA
from oskdft.scoring.ops import class_sums, rowwise_dot
from oskdft.scoring.plda import PLDA
from oskdft.utils.io import Pathlike, atomic_path
from oskdft.utils.registry import Registry

BACKENDS: Registry = Registry("scoring back end", names=SCORING_BACKENDS)


T = TypeVar("T")


def fitted(value: Optional[T]) -> T:
    """A parameter that ``fit`` (or loading) sets; a back end used before has none."""
    if value is None:
        raise RuntimeError("the back end is not fitted: fit it or load it first")
    return value


class Backend(ABC):
    """Scores trials between rows of one embedding table.

    ``trained`` back ends learn from the back-end set (training speakers' utterances) in
    :meth:`fit`; ``uses_crops`` ones need :attr:`Embeddings.crop_means`.
    """

    trained = False
    uses_crops = False

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> "Backend":
        return cls()

    def fit(self, train: Embeddings, speakers: np.ndarray) -> "Backend":
        """:param speakers: the speaker of each row of ``train``."""
        return self

    @abstractmethod
    def score(self, data: Embeddings, enrol: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Scores of the trials ``(enrol[i], test[i])``, rows of ``data``; higher = same speaker."""

    def state_dict(self) -> Dict[str, np.ndarray]:
        """What :meth:`from_state_dict` needs to rebuild the fitted back end."""
        return {}

    @classmethod
    def from_state_dict(cls, state: Dict[str, np.ndarray]) -> "Backend":
        return cls()


def build_backend(name: str, cfg: EvalConfig) -> Backend:
    """A new, unfitted back end named as in ``eval.backends``."""
    return BACKENDS.get(name).from_config(cfg)


def save_backend(backend: Backend, path: Pathlike) -> None:
    """Write a fitted back end's parameters as ``.npz``, atomically."""
    with atomic_path(path) as tmp:
        # mypy matches the ** dict against savez's allow_pickle: bool too.
        np.savez(tmp, **backend.state_dict())  # type: ignore[arg-type]


def load_backend(name: str, path: Pathlike) -> Backend:
    """Rebuild back end ``name`` from :func:`save_backend`'s file (e.g. for deployment)."""
    with np.load(path) as state:
        return BACKENDS.get(name).from_state_dict(dict(state))


@BACKENDS.register("cosine")
class Cosine(Backend):
    def score(self, data: Embeddings, enrol: np.ndarray, test: np.ndarray) -> np.ndarray:
        unit = length_normalize(data.vectors)
        return rowwise_dot(unit, unit, enrol, test)


@BACKENDS.register("cosine_mean")
class CosineMean(Backend):
    trained = True

    def __init__(self, mean: Optional[np.ndarray] = None):
        self.mean = mean

    def fit(self, train: Embeddings, speakers: np.ndarray) -> "CosineMean":
        self.mean = train.vectors.mean(axis=0)
        return self

    def normalize(self, vectors: np.ndarray) -> np.ndarray:
        return length_normalize(vectors - fitted(self.mean))

    def score(self, data: Embeddings, enrol: np.ndarray, test: np.ndarray) -> np.ndarray:
        unit = self.normalize(data.vectors)
        return rowwise_dot(unit, unit, enrol, test)

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {"mean": fitted(self.mean)}

    @classmethod
    def from_state_dict(cls, state: Dict[str, np.ndarray]) -> "CosineMean":
        return cls(state["mean"])


@BACKENDS.register("plda")
class PLDABackend(Backend):
    """Kaldi's x-vector back end: subtract the mean, LDA, length-normalise to ``sqrt(dim)``,
    PLDA (EM), and score with PLDA's own length normalisation."""

    trained = True

    def __init__(
        self,
        lda_dim: Optional[int] = None,
        num_iters: int = 10,
        lda: Optional[LDA] = None,
        plda: Optional[PLDA] = None,
    ):
        self.lda_dim, self.num_iters, self.lda, self.plda = lda_dim, num_iters, lda, plda

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> "PLDABackend":
        return cls(lda_dim=cfg.lda_dim, num_iters=cfg.plda_iters)

    def fit(self, train: Embeddings, speakers: np.ndarray) -> "PLDABackend":
        x = train.vectors.astype(np.float64)
        if self.lda_dim is None:
            self.lda = LDA.identity(x.mean(axis=0))
        else:
            self.lda = LDA.fit(x, speakers, self.lda_dim)
        self.plda = PLDA.fit(self.preprocess(x), speakers, self.num_iters)
        return self

    def preprocess(self, vectors: np.ndarray) -> np.ndarray:
        """Centre, LDA, and length-normalise to sqrt(dim): what PLDA is trained on."""
        reduced = fitted(self.lda)(vectors.astype(np.float64))
        return length_normalize(reduced, math.sqrt(reduced.shape[1]))

    def score(self, data: Embeddings, enrol: np.ndarray, test: np.ndarray) -> np.ndarray:
        plda = fitted(self.plda)
        return plda.llr(plda.project(self.preprocess(data.vectors)), enrol, test)

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {
            **{f"lda_{key}": value for key, value in fitted(self.lda).state_dict().items()},
            **{f"plda_{key}": value for key, value in fitted(self.plda).state_dict().items()},
        }

    @classmethod
    def from_state_dict(cls, state: Dict[str, np.ndarray]) -> "PLDABackend":
        lda = LDA(state["lda_mean"], state["lda_transform"])
        plda = PLDA(state["plda_mean"], state["plda_transform"], state["plda_psi"])
        return cls(lda_dim=len(lda.transform), lda=lda, plda=plda)


@BACKENDS.register("asnorm")
class ASNorm(CosineMean):
    """Adaptive symmetric score normalisation of the mean-subtracted cosine.

    For a trial ``(e, t)`` with raw score ``s``, with ``mu_x``/``sd_x`` the mean/standard
    deviation of the ``top_n`` highest cosines of ``x`` against the cohort::

        0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)

    The cohort: one unit-length mean embedding per training speaker (WeSpeaker's choice).
    """

    def __init__(
        self,
        top_n: int = 300,
        mean: Optional[np.ndarray] = None,
        cohort: Optional[np.ndarray] = None,
        chunk: int = 4096,
    ):
        super().__init__(mean)
        self.top_n, self.cohort, self.chunk = top_n, cohort, chunk

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> "ASNorm":
        return cls(top_n=cfg.asnorm_top_n)

    def fit(self, train: Embeddings, speakers: np.ndarray) -> "ASNorm":
        super().fit(train, speakers)
        sums, _ = class_sums(self.normalize(train.vectors), speakers)
        self.cohort = length_normalize(sums).astype(np.float32)
        return self

    def cohort_stats(self, unit: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each row's ``top_n`` best cohort cosines, computed
        ``chunk`` rows at a time to bound the memory of the score matrix."""
        cohort = fitted(self.cohort)
        top_n = min(self.top_n, len(cohort))
        mean, std = np.empty(len(unit)), np.empty(len(unit))
        for start in range(0, len(unit), self.chunk):
            part = slice(start, start + self.chunk)
            scores = unit[part] @ cohort.T
            top = np.partition(scores, scores.shape[1] - top_n, axis=1)[:, -top_n:]
            mean[part], std[part] = top.mean(axis=1), top.std(axis=1)
        # A cohort of one (or of identical scores) has no spread; avoid dividing by zero.
        return mean, np.maximum(std, 1e-6)

    def score(self, data: Embeddings, enrol: np.ndarray, test: np.ndarray) -> np.ndarray:
        unit = self.normalize(data.vectors)
        raw = rowwise_dot(unit, unit, enrol, test)
        # Cohort statistics only for the utterances the trials use.
        rows = np.unique(np.r_[enrol, test])
        mean, std = self.cohort_stats(unit[rows])
        e, t = np.searchsorted(rows, enrol), np.searchsorted(rows, test)
        return 0.5 * ((raw - mean[e]) / std[e] + (raw - mean[t]) / std[t])

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {
            "top_n": np.array(self.top_n),
            "mean": fitted(self.mean),
            "cohort": fitted(self.cohort),
        }

    @classmethod
    def from_state_dict(cls, state: Dict[str, np.ndarray]) -> "ASNorm":
        return cls(top_n=int(state["top_n"]), mean=state["mean"], cohort=state["cohort"])


@BACKENDS.register("fused")
class Fused(Backend):
    """The OS-KDFT paper's score: ``0.5 cos(full_e, full_t) + 0.5 mean_ij cos(crop_ei, crop_tj)``.

    The mean over crop pairs is the dot product of the mean unit crop vectors
    (:attr:`Embeddings.crop_means`), so it costs one dot product per trial.
    """

    uses_crops = True

    def score(self, data: Embeddings, enrol: np.ndarray, test: np.ndarray) -> np.ndarray:
        if data.crop_means is None:
            raise ValueError("the fused score needs crop embeddings: load them with crops=True")
        unit = length_normalize(data.vectors)
        full = rowwise_dot(unit, unit, enrol, test)
        crops = rowwise_dot(data.crop_means, data.crop_means, enrol, test)
        return 0.5 * (full + crops)
