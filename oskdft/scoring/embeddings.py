"""Embedding tables as the back ends see them: one row per utterance.

Stage 4 writes, per set, ``xvector.scp`` (one vector per utterance) and ``xvector_crops.scp``
(a ``num_crops x D`` matrix per utterance). Crops are reduced on loading to the mean of their
unit-length vectors: the mean of all crop-pair cosines of two utterances is the dot product of
these means, because the dot product is bilinear.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike
from oskdft.utils.kaldi_io import read_scp


@dataclass
class Embeddings:
    """Utterance ids and their embeddings, row ``i`` for ``keys[i]``.

    :param vectors: ``(N, D)`` full-utterance embeddings.
    :param crop_means: ``(N, D)`` mean of each utterance's length-normalised crop embeddings,
        when the crops were loaded.
    """

    keys: List[str]
    vectors: np.ndarray
    crop_means: Optional[np.ndarray] = None

    @cached_property
    def index(self) -> Dict[str, int]:
        """Utterance id -> row."""
        return {key: row for row, key in enumerate(self.keys)}


def length_normalize(x: np.ndarray, norm: float = 1.0) -> np.ndarray:
    """Scale each row (last axis) to length ``norm``; zero rows stay zero.

    >>> length_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]), norm=10.0).tolist()
    [[6.0, 8.0], [0.0, 0.0]]
    """
    lengths = np.linalg.norm(x, axis=-1, keepdims=True)
    return x * (norm / np.maximum(lengths, 1e-12))


def mean_unit_crops(crops: np.ndarray) -> np.ndarray:
    """The mean of length-normalised crop embeddings (see the module docstring), over axis -2:
    ``(num_crops, D) -> (D,)``, or ``(N, num_crops, D) -> (N, D)`` for N utterances at once.

    >>> mean_unit_crops(np.array([[[2.0, 0.0], [0.0, 3.0]]])).tolist()
    [[0.5, 0.5]]
    """
    return length_normalize(crops).mean(axis=-2)


def load_embeddings(set_dir: Pathlike, crops: bool = False) -> Embeddings:
    """Load ``<set_dir>/xvector.scp`` (and ``xvector_crops.scp`` when ``crops``) as float32.

    :raises InputError: a missing file, an empty table, rows of different sizes, or crops
        whose utterances or shapes differ from the full-utterance table's.
    """
    set_dir = Path(set_dir)
    scp = set_dir / "xvector.scp"
    table = _read_table(scp)
    keys = list(table)
    dims = {value.shape for value in table.values()}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise InputError(scp, f"embeddings must be vectors of one size, found shapes {dims}")
    vectors = np.stack([table[k] for k in keys]).astype(np.float32)
    if not crops:
        return Embeddings(keys, vectors)

    crops_scp = set_dir / "xvector_crops.scp"
    crop_table = _read_table(crops_scp)
    if set(crop_table) != set(keys):
        extra = sorted(set(crop_table) ^ set(keys))
        raise InputError(
            crops_scp,
            f"{len(extra)} utterance(s) not in both {scp.name} and "
            f"{crops_scp.name}, e.g. {extra[0]!r}",
            hint="re-run stage 4",
        )
    shapes = {value.shape for value in crop_table.values()}
    shape = next(iter(shapes))
    if len(shapes) != 1 or len(shape) != 2 or shape[1] != vectors.shape[1]:
        raise InputError(
            crops_scp,
            f"crops must be matrices of one shape (num_crops, "
            f"{vectors.shape[1]}), found shapes {shapes}",
            hint="re-run stage 4",
        )
    crop_stack = np.stack([crop_table[k] for k in keys]).astype(np.float32, copy=False)
    return Embeddings(keys, vectors, mean_unit_crops(crop_stack))


def _read_table(scp: Path) -> Dict[str, np.ndarray]:
    if not scp.is_file():
        raise InputError(scp, "embeddings not found", hint="run stage 4 for this set")
    table = read_scp(scp)
    if not table:
        raise InputError(scp, "no embeddings", hint="re-run stage 4 for this set")
    return table
