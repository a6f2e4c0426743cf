"""Deployment: a trained or exported model that embeds audio and verifies pairs of utterances
(the ``oskdft verify``, ``embed`` and ``info`` commands).

A MODEL is one of:

- ``exp/<system>/final/``, the PyTorch model (needs torch); stage 5's files are read from
  ``exp/<system>/scores/`` next to it;
- an exported ONNX file (stage 6), ``exp/<system>/export/model.onnx`` or ``model.int8.onnx``,
  or the export directory itself (its ``model.onnx``); stage 5's files are the copies next to it.
  **This module imports no torch**, and an ONNX MODEL never loads it, so such a model runs where
  only numpy, scipy, soundfile and onnxruntime are installed.

Audio goes through stage 0's rule (first channel, resampled to 16 kHz): with a final dir through
:func:`oskdft.data.audio.load_audio`, exactly as stages 0-4 read it; with an ONNX model through
its numpy port, :func:`oskdft.inference.onnx_runtime.read_audio`.

Audio shorter than the model's first frame (its receptive field: 25 ms for the SSL models) has
no embedding: it is refused with its duration and the minimum. Audio without signal energy
(RMS below :data:`SILENCE_DBFS`) embeds, but means nothing: verify warns, and embed logs it.

**verify** embeds each utterance alone (and, for a back end that uses them, its crops, as stage 4
does), scores the pair with stage 5's fitted back end, and calibrates the score with stage 5's
calibration: the decision is "same speaker" when the LLR reaches the threshold of the chosen
operating point (``eer``: the validation trials' equal-error point; ``p_target=0.01``: the Bayes
threshold for that target prior).

**embed** writes Kaldi tables like stage 4's ``xvector.{ark,scp}``: utterances are taken in
chunks of wav.scp order, each chunk batched by length and written as ``xvector.<k>.{ark,scp}``,
then ``xvector.scp`` indexes them all (sorted by utterance id). A rerun keeps every chunk whose
table already holds exactly its utterances, so an interrupted run resumes where it stopped.
Every entry is read even after a bad one (missing, unreadable, too short), so one run names
them all (wav.scp line, utterance, reason); by default nothing more is embedded once one is
found, and the run fails. With ``skip_bad`` the others are embedded, and the bad ones are
listed in ``skipped.txt`` (``<utt> <wav.scp>:<line>: <reason>``; per chunk in
``skipped.<k>.txt``, which a resumed run reads to know the chunk is done).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, overload

import numpy as np
from tqdm import tqdm

from oskdft.config import SystemConfig, load_config, to_dict
from oskdft.embedding.views import crop_audio, length_batches, pad_batch
from oskdft.inference.onnx_runtime import OnnxEmbedder, read_audio, read_wav_scp
from oskdft.layout import (
    CALIBRATION_NAME,
    CONFIG_NAME,
    META_NAME,
    METRICS_NAME,
    MODEL_NAME,
    ONNX_NAME,
    SAMPLE_RATE,
    SCORES_DIR,
)
from oskdft.scoring.backends import BACKENDS, Backend, build_backend, load_backend
from oskdft.scoring.calibration import Calibration, load_calibration
from oskdft.scoring.embeddings import Embeddings, mean_unit_crops
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_write
from oskdft.utils.kaldi_io import read_scp_keys, write_ark_scp, write_scp_index

FINAL, ONNX = "final", "onnx"
EMBED_META_NAME = "embed.json"
SKIPPED_NAME = "skipped.txt"
# An input quieter than this (RMS, dB below full scale) holds no signal: digital silence or a
# dead channel. Recordings' noise floors lie far above it (16-bit quantisation: -101 dBFS).
SILENCE_DBFS = -80.0

Embedder = Callable[[np.ndarray, np.ndarray], np.ndarray]

_MODEL_HINT = (
    "give a trained system's exp/<system>/final/ directory, an exported .onnx file "
    "or its export directory (stage 6)"
)


@dataclass
class ModelFiles:
    """Where the parts of a MODEL are.

    :param model: the final directory, or the ``.onnx`` file.
    :param meta: the trainer's ``final/meta.json``, or the export's ``meta.json``.
    :param scoring_dir: stage 5's ``calibration.json``, ``metrics.json`` and ``<backend>.npz``.
    """

    kind: str
    model: Path
    config: Path
    meta: Path
    scoring_dir: Path


def locate_model(model: Pathlike) -> ModelFiles:
    """Recognise a MODEL (see the module docstring) without loading it.

    :raises InputError: when ``model`` is none of them.
    """
    path = Path(model)
    if path.is_dir() and (path / ONNX_NAME).is_file():
        path = path / ONNX_NAME
    if path.suffix == ".onnx":
        if not path.is_file():
            raise InputError(path, "ONNX model not found", hint=_MODEL_HINT)
        return ModelFiles(
            ONNX, path, path.parent / CONFIG_NAME, path.parent / META_NAME, path.parent
        )
    if path.is_dir() and (path / MODEL_NAME).is_file():
        return ModelFiles(
            FINAL, path, path / CONFIG_NAME, path / META_NAME, path.parent / SCORES_DIR
        )
    problem = "no such file or directory" if not path.exists() else "not a model"
    raise InputError(path, problem, hint=_MODEL_HINT)


@dataclass
class Deployment:
    """A loaded MODEL: reads audio by the audio rule and embeds it.

    :param embedder: ``(wav [B, T] float32, lengths [B] int64) -> [B, D]`` embeddings.
    :param fingerprint: changes whenever the model is rewritten (resuming ``embed`` checks it).
    """

    files: ModelFiles
    config: SystemConfig
    embedder: Embedder
    read_audio: Callable[[str], np.ndarray]
    fingerprint: str
    # The shortest input with an embedding; None: not known (an export older than the check).
    min_samples: Optional[int] = None

    def embed(self, audio: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, D]`` embeddings of ``N`` utterances, run as one zero-padded batch."""
        return self.embedder(*pad_batch(audio))

    def load(self, entry: str) -> np.ndarray:
        """The audio of a file or piped command (the audio rule), long enough to embed.

        :raises InputError: naming the file when it is unreadable, or shorter than
            :attr:`min_samples` (its duration and the minimum).
        """
        samples = self.read_audio(entry)
        if self.min_samples is not None and len(samples) < self.min_samples:
            raise InputError(
                entry,
                f"audio is {_ms(len(samples))} long; the model needs at "
                f"least {_ms(self.min_samples)} ({self.min_samples} samples at "
                f"{SAMPLE_RATE} Hz)",
                hint="give a longer utterance",
            )
        return samples


def is_silent(samples: np.ndarray) -> bool:
    """Whether ``samples`` has no signal energy (RMS below :data:`SILENCE_DBFS`).

    >>> is_silent(np.zeros(48000)), is_silent(np.full(48000, 1e-5)), is_silent(np.full(10, 0.01))
    (True, True, False)
    """
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return rms < 10 ** (SILENCE_DBFS / 20)


def _ms(num_samples: int) -> str:
    return f"{1000 * num_samples / SAMPLE_RATE:g} ms"


def load_deployment(model: Pathlike, device: str = "cpu") -> Deployment:
    """Load a MODEL; torch is imported only for a final directory.

    :param device: where a final directory's model runs (``cpu``, ``cuda``, ``cuda:1``); an
        ONNX model runs on the CPU.
    """
    files = locate_model(model)
    if files.kind == ONNX:
        if device != "cpu":
            raise InputError(
                files.model,
                f"an ONNX model runs on the CPU, not {device}",
                hint="give the final/ directory to use a GPU",
            )
        meta = _read_json(files.meta) or {}
        return Deployment(
            files,
            load_config(files.config),
            OnnxEmbedder(files.model),
            read_audio,
            _file_fingerprint(files.model),
            meta.get("min_samples"),
        )
    # Imported here, not at the top: an ONNX model must run without torch installed.
    from oskdft.data.audio import load_audio
    from oskdft.model_dir import TorchEmbedder, final_fingerprint, load_final

    speaker_model, config, _ = load_final(files.model, device)
    return Deployment(
        files,
        config,
        TorchEmbedder(speaker_model, device),
        load_audio,
        final_fingerprint(files.model),
        speaker_model.min_samples,
    )


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# verify


@dataclass
class Scorer:
    """Stage 5's fitted back end ``name`` and its calibration."""

    name: str
    backend: Backend
    calibration: Calibration
    calibration_path: Path

    def threshold(self, operating_point: str) -> float:
        try:
            return self.calibration.threshold(operating_point)
        except KeyError as e:
            raise InputError(
                self.calibration_path, e.args[0], hint="pass --operating-point with one of them"
            ) from e


def load_scorer(deployment: Deployment, backend: Optional[str] = None) -> Scorer:
    """The back end ``backend`` (default: the deployment back end stage 5 chose) with its
    calibration, from the model's scoring files.

    :raises InputError: when stage 5's files are missing (the hint says which stage to run).
    """
    files = deployment.files
    hint = (
        "run stage 5, then stage 6 again to copy its files into the export"
        if files.kind == ONNX
        else "run stage 5 for this system"
    )
    path = files.scoring_dir / CALIBRATION_NAME
    if not path.is_file():
        raise InputError(path, "no calibration, so no decision threshold", hint=hint)
    name, calibration = load_calibration(path, backend)
    if not BACKENDS.get(name).trained:
        return Scorer(name, build_backend(name, deployment.config.eval), calibration, path)
    model_path = files.scoring_dir / f"{name}.npz"
    if not model_path.is_file():
        raise InputError(model_path, f"the fitted {name} back end is missing", hint=hint)
    return Scorer(name, load_backend(name, model_path), calibration, path)


@dataclass
class Verdict:
    """The outcome of one trial: the back end's ``score``, its calibrated ``llr`` and the
    decision at ``operating_point`` (same speaker when ``llr >= threshold``)."""

    backend: str
    score: float
    llr: float
    operating_point: str
    threshold: float
    same_speaker: bool
    # The inputs without signal energy (:func:`is_silent`): the decision means nothing.
    silent: List[str] = field(default_factory=list)


def verify_pair(
    deployment: Deployment, scorer: Scorer, enrol: str, test: str, operating_point: str = "eer"
) -> Verdict:
    """Whether audio files (or piped commands) ``enrol`` and ``test`` share a speaker."""
    threshold = scorer.threshold(operating_point)
    audio = [deployment.load(enrol), deployment.load(test)]
    vectors = np.concatenate([deployment.embed([samples]) for samples in audio])
    crop_means = None
    if scorer.backend.uses_crops:
        eval_cfg = deployment.config.eval
        crop_samples = round(eval_cfg.crop_seconds * SAMPLE_RATE)
        # As stage 5 reduces stage 4's crops.
        crop_means = np.stack(
            [
                mean_unit_crops(
                    deployment.embed(list(crop_audio(samples, crop_samples, eval_cfg.num_crops)))
                )
                for samples in audio
            ]
        )
    embeddings = Embeddings(["enrol", "test"], vectors, crop_means)
    score = float(scorer.backend.score(embeddings, np.array([0]), np.array([1]))[0])
    seconds = np.array([len(samples) / SAMPLE_RATE for samples in audio])
    llr = float(scorer.calibration(np.array([score]), seconds[:1], seconds[1:])[0])
    silent = [
        entry for entry, samples in zip((enrol, test), audio, strict=True) if is_silent(samples)
    ]
    return Verdict(scorer.name, score, llr, operating_point, threshold, llr >= threshold, silent)


# ---------------------------------------------------------------------------------------------
# embed


def embed_wav_scp(
    deployment: Deployment,
    wav_scp: Pathlike,
    out_dir: Pathlike,
    batch_seconds: Optional[float] = None,
    chunk_size: int = 200,
    progress: bool = True,
    skip_bad: bool = False,
) -> Path:
    """Embed every utterance of ``wav_scp`` into ``out_dir`` (see the module docstring).

    :param batch_seconds: the most padded audio per model call (default: the model's
        ``eval.batch_seconds``, stage 4's setting).
    :param chunk_size: utterances per table; the unit of resuming, and of audio held in memory.
    :param skip_bad: embed the good entries and list the bad ones in ``skipped.txt``, instead
        of failing.
    :return: the index, ``out_dir/xvector.scp``.
    :raises InputError: naming the first bad entry and how many more there are, each of them
        logged (finished chunks are kept); or an ``out_dir`` that holds another model's
        embeddings.
    """
    entries = read_wav_scp(wav_scp)
    # Absolute paths in the scp files: the tables read the same from any working directory.
    out_dir = Path(out_dir).resolve()
    _claim_out_dir(out_dir, deployment, chunk_size)
    keys = list(entries)
    max_samples = round((batch_seconds or deployment.config.eval.batch_seconds) * SAMPLE_RATE)
    lines: List[str] = []
    bad: List[InputError] = []
    chunks = list(enumerate(range(0, len(keys), chunk_size), 1))
    with tqdm(total=len(keys), unit="utt", desc="embed", disable=not progress) as bar:
        for index, start in chunks:
            chunk = keys[start : start + chunk_size]
            ark, scp = out_dir / f"xvector.{index}.ark", out_dir / f"xvector.{index}.scp"
            skipped = _skipped_path(out_dir, index)
            if scp.is_file() and _chunk_done(scp, skipped, chunk, skip_bad):
                bar.update(len(chunk))
                lines.extend(scp.read_text().splitlines(keepends=True))
                continue
            audio, chunk_bad = {}, {}
            for key in chunk:
                try:
                    audio[key] = _read_entry(deployment, wav_scp, key, *entries[key])
                except InputError as e:
                    logging.error("%s", e)
                    chunk_bad[key] = e
            bad.extend(chunk_bad.values())
            if bad and not skip_bad:  # fail-fast: only read on, to name every bad entry
                bar.update(len(chunk))
                continue
            bar.update(len(chunk_bad))
            good = [key for key in chunk if key in audio]
            vectors = (
                list(
                    embed_by_length(deployment.embedder, [audio[k] for k in good], max_samples, bar)
                )
                if good
                else []
            )
            _write_skipped(skipped, chunk_bad)
            write_ark_scp(ark, scp, zip(good, vectors, strict=True))
            lines.extend(scp.read_text().splitlines(keepends=True))
    if bad and not skip_bad:
        more = f"; {len(bad) - 1} more bad entries, logged above" if len(bad) > 1 else ""
        raise InputError(
            bad[0].path,
            bad[0].problem + more,
            line=bad[0].line,
            hint="fix or remove them, or pass --skip-bad to embed the others",
        )
    _merge_skipped(out_dir, len(chunks))
    index_path = out_dir / "xvector.scp"
    write_scp_index(index_path, lines)
    return index_path


def _read_entry(
    deployment: Deployment, wav_scp: Pathlike, key: str, source: str, line: int
) -> np.ndarray:
    """The audio of one wav.scp entry; a bad one is named by its wav.scp line and utterance,
    one without signal energy is logged."""
    try:
        samples = deployment.load(source)
    except InputError as e:
        raise InputError(wav_scp, f"utterance {key!r}: {e}", line=line) from e
    if is_silent(samples):
        logging.warning(
            "%s:%d: utterance %r: %s has no signal energy (RMS below %g dBFS): "
            "its embedding means nothing",
            wav_scp,
            line,
            key,
            source,
            SILENCE_DBFS,
        )
    return samples


def _skipped_path(out_dir: Path, chunk: int) -> Path:
    return out_dir / SKIPPED_NAME.replace(".txt", f".{chunk}.txt")


def _chunk_done(scp: Path, skipped: Path, chunk: List[str], skip_bad: bool) -> bool:
    """Whether the table ``scp`` holds the chunk's utterances: all of them, or with
    ``skip_bad`` all but those its ``skipped`` list names."""
    if not skipped.is_file():
        return read_scp_keys(scp) == chunk
    if not skip_bad:  # the skipped entries are wanted now
        return False
    dropped = {line.split(maxsplit=1)[0] for line in skipped.read_text().splitlines()}
    return read_scp_keys(scp) == [key for key in chunk if key not in dropped]


def _write_skipped(path: Path, bad: Dict[str, InputError]) -> None:
    """A chunk's ``<utt> <reason>`` lines; no file when none was skipped."""
    if not bad:
        path.unlink(missing_ok=True)
        return
    with atomic_write(path) as f:
        f.writelines(f"{key} {error}\n" for key, error in bad.items())


def _merge_skipped(out_dir: Path, num_chunks: int) -> None:
    """``skipped.txt``: every chunk's skipped entries, in wav.scp order; none when there are
    none (a stale list of an earlier run is removed)."""
    parts = [_skipped_path(out_dir, index) for index in range(1, num_chunks + 1)]
    text = "".join(path.read_text() for path in parts if path.is_file())
    if not text:
        (out_dir / SKIPPED_NAME).unlink(missing_ok=True)
        return
    with atomic_write(out_dir / SKIPPED_NAME) as f:
        f.write(text)
    logging.warning("%d utterances skipped, listed in %s", text.count("\n"), out_dir / SKIPPED_NAME)


def embed_by_length(
    embedder: Embedder, audio: Sequence[np.ndarray], max_samples: int, bar: Optional[tqdm] = None
) -> np.ndarray:
    """``[N, D]`` embeddings of ``audio`` in its order, computed in zero-padded batches of
    similar length (:func:`~oskdft.embedding.views.length_batches`); ``bar`` advances by each
    batch's utterances."""
    vectors: Dict[int, np.ndarray] = {}
    for batch in length_batches([len(samples) for samples in audio], max_samples):
        for row, embedding in zip(
            batch, embedder(*pad_batch([audio[i] for i in batch])), strict=True
        ):
            vectors[row] = embedding
        if bar is not None:
            bar.update(len(batch))
    return np.stack([vectors[row] for row in range(len(audio))])


def _claim_out_dir(out_dir: Path, deployment: Deployment, chunk_size: int) -> None:
    """Record which model and chunking fill ``out_dir``; refuse one that another filled."""
    claim = {
        "model": str(deployment.files.model),
        "fingerprint": deployment.fingerprint,
        "chunk_size": chunk_size,
    }
    path = out_dir / EMBED_META_NAME
    if path.is_file():
        previous = json.loads(path.read_text())
        if any(previous.get(key) != claim[key] for key in ("fingerprint", "chunk_size")):
            raise InputError(
                path,
                f"{out_dir} holds embeddings of {previous.get('model')} "
                f"(chunk size {previous.get('chunk_size')}), not of this model "
                f"with chunk size {chunk_size}",
                hint="choose another --out, or delete it to start over",
            )
        return
    with atomic_write(path) as f:
        json.dump(claim, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# info


def describe_model(model: Pathlike) -> Dict[str, Any]:
    """What ``oskdft info MODEL`` shows, read from the model's files (no weights are loaded):
    the system, its teacher, parameter counts and compute per second of audio, its training
    config, stage 5's results and calibration, and for an export what it is and its parity
    figures."""
    files = locate_model(model)
    cfg = load_config(files.config)
    meta = _read_json(files.meta, required=True)
    return {
        "model": str(files.model),
        "kind": files.kind,
        # An export may have been copied anywhere; a final dir is exp/<system>/final.
        "system": meta.get("system") if files.kind == ONNX else files.model.parent.name,
        "description": cfg.description,
        "teacher": cfg.teacher.path,
        "params": meta.get("params"),
        "macs_per_second": meta.get("macs_per_second"),
        "config_path": str(files.config),
        "config": to_dict(cfg),
        "export": meta if files.kind == ONNX else None,
        "calibration": _read_json(files.scoring_dir / CALIBRATION_NAME),
        "metrics": _read_json(files.scoring_dir / METRICS_NAME),
    }


@overload
def _read_json(path: Path, required: Literal[True]) -> Dict[str, Any]: ...
@overload
def _read_json(path: Path, required: bool = False) -> Optional[Dict[str, Any]]: ...
def _read_json(path: Path, required: bool = False) -> Optional[Dict[str, Any]]:
    if not path.is_file():
        if required:
            raise InputError(path, "missing", hint=_MODEL_HINT)
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e})") from e
