"""How utterances are presented to a model, in numpy alone: batches of whole utterances grouped
by length, and the paper's crops.

The same rules as stage 4 (:mod:`oskdft.embedding.extract`), without torch, so that a deployed
ONNX model (:mod:`oskdft.inference.deploy`) batches and crops exactly as extraction did.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np


def length_batches(lengths: Sequence[int], max_samples: int) -> List[List[int]]:
    """Indices of ``lengths`` grouped longest first, each group's padded size (rows x its
    longest) at most ``max_samples``; a longer item is a group of its own.

    >>> length_batches([3, 9, 4, 5, 2], max_samples=10)
    [[1], [3, 2], [0, 4]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: List[List[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_samples:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def pad_batch(audio: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """``(wav, lengths)``: the utterances zero-padded into a ``[B, T]`` float32 array, and
    their lengths as int64, the model's two inputs.

    >>> wav, lengths = pad_batch([np.ones(2), np.ones(3)])
    >>> wav.tolist(), lengths.tolist()
    ([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], [2, 3])
    """
    lengths = np.array([len(a) for a in audio], dtype=np.int64)
    wav = np.zeros((len(audio), int(lengths.max())), dtype=np.float32)
    for row, samples in enumerate(audio):
        wav[row, : len(samples)] = samples
    return wav, lengths


def crop_starts(num_samples: int, crop_samples: int, num_crops: int) -> np.ndarray:
    """First sample of each crop: ``linspace(0, num_samples - crop_samples, num_crops)``
    rounded down; all 0 when the utterance is not longer than a crop.

    >>> crop_starts(5 * 16000, 3 * 16000, 5) / 16000
    array([0. , 0.5, 1. , 1.5, 2. ])
    """
    last = max(num_samples - crop_samples, 0)
    return np.floor(np.linspace(0, last, num_crops)).astype(np.int64)


def kd_crops(num_crops: int, original_crop_branches: bool) -> int:
    """How many of an utterance's first crops take the KD branch: ``num_crops // 2`` under
    ``eval.original_crop_branches``, else none.

    The original embedded the crops as one batch with its training flag on, and its layers
    split every batch into a KD half and an FT half: the first ``batch // 2`` rows skipped
    the adapters.

    >>> kd_crops(5, True), kd_crops(4, True), kd_crops(1, True), kd_crops(5, False)
    (2, 2, 0, 0)
    """
    return num_crops // 2 if original_crop_branches else 0


def crop_audio(audio: np.ndarray, crop_samples: int, num_crops: int) -> np.ndarray:
    """``(num_crops, crop_samples)`` crops of ``audio`` at :func:`crop_starts`; audio shorter
    than a crop is repeated to the crop length first (as the reference code's reader does).

    >>> crop_audio(np.arange(4.0), crop_samples=6, num_crops=2).tolist()
    [[0.0, 1.0, 2.0, 3.0, 0.0, 1.0], [0.0, 1.0, 2.0, 3.0, 0.0, 1.0]]
    """
    if len(audio) < crop_samples:
        audio = np.pad(audio, (0, crop_samples - len(audio)), mode="wrap")
    starts = crop_starts(len(audio), crop_samples, num_crops)
    return audio[starts[:, None] + np.arange(crop_samples)]
