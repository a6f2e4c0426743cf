"""Where oskdft's files live, and the constants every stage shares: each name written once.

Standard library only, so that serving an ONNX model (:mod:`oskdft.inference.onnx_runtime`)
reads it without importing torch. ``docs/architecture.md`` draws the whole working directory;
this module names its parts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

_Pathlike = Union[str, os.PathLike]

# The audio rule of every stage (oskdft.data.audio applies it): this rate, this channel.
SAMPLE_RATE = 16000
CHANNEL = 0  # the channel kept from multi-channel audio

# data/manifests/: stage 0's lhotse manifests of each set, stage 1's training windows.
MANIFESTS_DIR = "manifests"
MANIFEST_KINDS = ("recordings", "supervisions", "cuts")

# exp/<system>/ (stage 3 on); exp/<system>/final/ and export/ hold a CONFIG_NAME and META_NAME too.
CONFIG_NAME = "config.yaml"  # the merged SystemConfig
INPUTS_NAME = "inputs.yaml"  # hashes of the training run's other inputs
FINAL_DIR = "final"  # what inference needs (oskdft.model_dir)
EMBEDDINGS_DIR = "embeddings"  # stage 4's output
SCORES_DIR = "scores"  # stage 5's output
# final/
MODEL_NAME = "model.pt"
SSL_DIR = "ssl"
META_NAME = "meta.json"
# scores/: what the results table, deployment and export read
CALIBRATION_NAME = "calibration.json"
METRICS_NAME = "metrics.json"
# export/ (stage 6)
ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
TORCHSCRIPT_NAME = "model.torchscript.pt"


def manifest_path(data_dir: _Pathlike, set_name: str, kind: str) -> Path:
    """A manifest of a set, ``<data_dir>/manifests/<set>_<kind>.jsonl.gz``: stage 0 writes the
    corpus sets', stage 1 the cuts of ``valid`` and ``backend``.

    >>> str(manifest_path("data", "voxceleb1", "cuts"))
    'data/manifests/voxceleb1_cuts.jsonl.gz'
    """
    if kind not in MANIFEST_KINDS:
        raise ValueError(f"unknown manifest kind {kind!r}; known: {', '.join(MANIFEST_KINDS)}")
    return Path(data_dir) / MANIFESTS_DIR / f"{set_name}_{kind}.jsonl.gz"


def system_paths(exp_dir: _Pathlike, system: str) -> Tuple[Path, Path]:
    """``exp/<system>/final`` (its trained model) and ``exp/<system>/embeddings`` (stage 4)."""
    return Path(exp_dir, system, FINAL_DIR), Path(exp_dir, system, EMBEDDINGS_DIR)


def windows_path(data_dir: _Pathlike) -> Path:
    """Stage 1's training windows."""
    return Path(data_dir) / MANIFESTS_DIR / "train_windows.jsonl.gz"


def train_speakers_path(data_dir: _Pathlike) -> Path:
    """Stage 1's training speakers in class order: line i is class i."""
    return Path(data_dir) / MANIFESTS_DIR / "train_speakers.txt"


def speaker_counts_path(data_dir: _Pathlike) -> Path:
    """Stage 1's ``<speaker> <utterances> <windows>`` per class."""
    return Path(data_dir) / MANIFESTS_DIR / "train_speaker_counts.txt"


def aug_cuts_path(data_dir: _Pathlike, kind: str) -> Path:
    """Stage 1's augmentation sources of one kind (noise, music, speech, rir)."""
    return Path(data_dir) / MANIFESTS_DIR / f"aug_{kind}_cuts.jsonl.gz"
