"""Training data for stage 3: one random window per utterance per epoch (the paper's epoch),
augmented for the student, with the teacher's clean input or its cached hidden states.

- :class:`TrainingWindows` is a map-style dataset indexed by ``(epoch, window)`` pairs. An
  example holds ``student_wav`` (augmented), ``speaker`` (class index) and either
  ``teacher_hidden`` (``{layer: [frames, dim]}`` float16, when the windows come from the
  teacher cache) or ``teacher_wav`` (the clean window, for an online teacher), or neither.
- :class:`OneWindowPerUtteranceSampler` yields those pairs: every epoch, each utterance once in
  a random order with one of its windows drawn at random, split over DDP ranks.
- :func:`collate_windows` stacks examples into tensors.

Randomness is a function of ``(seed, epoch, window)`` only: the same seed gives the same
batches whatever the number of loader workers, and a run resumed mid-epoch sees the batches it
would have seen.

Memory: the windows manifest is read once and kept compact (one cut per utterance, numbers per
window), since VoxCeleb2 has ~7.6M windows of 2 s; every other window is made from its
utterance's first one with :func:`~oskdft.data.windows.shift_window`. Window cuts are read as
plain JSON for speed; the fields used are lhotse's ``MonoCut`` serialisation, and the cached
arrays' locations are kept by :class:`~oskdft.data.storage.StoredArrays`.
"""

from __future__ import annotations

import gzip
import json
from array import array
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from lhotse.serialization import deserialize_item
from numpy.typing import ArrayLike
from torch.utils.data import Dataset, Sampler

from oskdft.config import AugmentConfig
from oskdft.data.audio import load_audio
from oskdft.data.augment import AugmentSources, StudentAugmenter
from oskdft.data.storage import StoredArrays
from oskdft.data.windows import read_train_speakers, shift_window
from oskdft.layout import windows_path
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike

# The custom field of a window that holds its cached teacher hidden states.
TEACHER_FIELD = "teacher_hidden"


class _WindowIndex:
    """Windows grouped by utterance: the first window's JSON per utterance, a start time and
    (cached teacher) the location of its array per window. Compact arrays and one byte buffer,
    built in one streamed pass, which forked loader workers share without copying."""

    def __init__(self, manifest: Pathlike, speakers: Sequence[str]):
        class_of = {speaker: i for i, speaker in enumerate(speakers)}
        self.first_json = bytearray()
        json_offsets, utt_speakers, utt_first_window = array("q", [0]), array("q"), array("q")
        starts = array("d")
        arrays = StoredArrays(manifest)
        with_arrays: Optional[bool] = None  # set by the first window
        last_utt, seen = None, set()
        with gzip.open(manifest, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                window = json.loads(line)
                custom = window.get("custom") or {}
                if "utterance" not in custom:
                    raise InputError(
                        manifest,
                        "not a windows manifest (no custom utterance)",
                        line=line_no,
                        hint="rerun stage 1",
                    )
                teacher_hidden = custom.pop(TEACHER_FIELD, None)
                if with_arrays is None:
                    with_arrays = teacher_hidden is not None
                if (teacher_hidden is not None) != with_arrays:
                    raise InputError(
                        manifest,
                        f"window {window['id']}: some windows have a {TEACHER_FIELD} and some not",
                        line=line_no,
                        hint="rerun stage 2",
                    )
                if teacher_hidden is not None:
                    arrays.add(teacher_hidden, window["id"], line_no)
                if custom["utterance"] != last_utt:
                    last_utt = custom["utterance"]
                    if last_utt in seen:
                        raise InputError(
                            manifest,
                            f"the windows of {last_utt} are not together",
                            line=line_no,
                            hint="rerun stage 1",
                        )
                    seen.add(last_utt)
                    speaker = window["supervisions"][0]["speaker"]
                    if speaker not in class_of:
                        raise InputError(
                            manifest,
                            f"speaker {speaker} is not a training class",
                            line=line_no,
                            hint="rerun stages 1-2",
                        )
                    utt_speakers.append(class_of[speaker])
                    utt_first_window.append(len(starts))
                    self.first_json += json.dumps(window).encode()
                    json_offsets.append(len(self.first_json))
                starts.append(window["start"])
        if not starts:
            raise InputError(manifest, "no windows", hint="rerun stage 1")
        utt_first_window.append(len(starts))
        self.json_offsets = np.frombuffer(json_offsets, dtype=np.int64)
        self.speakers = np.frombuffer(utt_speakers, dtype=np.int64)
        self.first_window = np.frombuffer(utt_first_window, dtype=np.int64)
        self.starts = np.frombuffer(starts, dtype=np.float64)
        self.arrays = arrays.finish() if with_arrays else None

    def utterance_of(self, window: int) -> int:
        return int(np.searchsorted(self.first_window, window, side="right") - 1)

    def window(self, index: int, utt: Optional[int] = None):
        """The cut of window ``index``; ``utt``: its utterance, when the caller knows it."""
        if utt is None:
            utt = self.utterance_of(index)
        text = self.first_json[self.json_offsets[utt] : self.json_offsets[utt + 1]]
        first = deserialize_item(json.loads(text))
        position = index - int(self.first_window[utt])
        return first if position == 0 else shift_window(first, self.starts[index], position)


class TrainingWindows(Dataset):
    """Training windows for the student (see the module docstring).

    :param windows: a windows manifest: stage 1's ``train_windows.jsonl.gz``, or the teacher
        cache's ``cuts.jsonl.gz`` (the same windows with their hidden states attached).
    :param speakers: class order (:func:`~oskdft.data.windows.read_train_speakers`).
    :param augmenter: turns a clean window into the student's input; None: the clean window.
    :param seed: with the epoch and window, seeds every augmentation draw.
    :param teacher_wav: also return the clean window, for a teacher run in the training step.
    :param teacher_layers: the hidden-state indices stacked in the cached arrays, in order
        (the cache's ``layers``); needed when ``windows`` come from the teacher cache.
    """

    def __init__(
        self,
        windows: Pathlike,
        speakers: Sequence[str],
        augmenter: Optional[StudentAugmenter] = None,
        seed: int = 0,
        teacher_wav: bool = False,
        teacher_layers: Optional[Sequence[int]] = None,
    ):
        self.index = _WindowIndex(windows, speakers)
        self.augmenter, self.seed, self.teacher_wav = augmenter, seed, teacher_wav
        self.teacher_layers = list(teacher_layers or [])
        arrays = self.index.arrays
        if arrays is not None and len(self.teacher_layers) != arrays.shape[0]:
            raise ValueError(
                f"{windows}: the cached arrays stack {arrays.shape[0]} layers, but "
                f"teacher_layers={self.teacher_layers}; pass the cache's layers"
            )

    @classmethod
    def from_data_dir(
        cls,
        data_dir: Pathlike,
        augment: Optional[AugmentConfig],
        seed: int,
        cache_cuts: Optional[Pathlike] = None,
        teacher_layers: Optional[Sequence[int]] = None,
        teacher_wav: bool = False,
    ) -> "TrainingWindows":
        """The dataset stage 3 uses: stage 1's windows and speakers in ``data_dir``, or the
        cached windows ``cache_cuts`` holding ``teacher_layers``; ``augment`` None or with
        ``prob`` 0 turns augmentation off."""
        augmenter = None
        if augment is not None and augment.prob > 0:
            augmenter = StudentAugmenter(augment, AugmentSources.from_data_dir(data_dir))
        return cls(
            cache_cuts or windows_path(data_dir),
            read_train_speakers(data_dir),
            augmenter,
            seed,
            teacher_wav,
            teacher_layers,
        )

    @property
    def num_utterances(self) -> int:
        return len(self.index.speakers)

    @property
    def windows_per_utterance(self) -> np.ndarray:
        return np.diff(self.index.first_window)

    def __len__(self) -> int:
        return len(self.index.starts)

    def window(self, index: int):
        """The cut of window ``index`` (its position in the manifest)."""
        return self.index.window(index)

    def __getitem__(self, item: Tuple[int, int]) -> Dict[str, Any]:
        epoch, index = item
        utt = self.index.utterance_of(index)
        cut = self.index.window(index, utt)
        example: Dict[str, Any] = {"window": index, "speaker": int(self.index.speakers[utt])}
        # Decode the clean window once, and only when it is sure to be used: an augmented
        # student input decodes its own mix.
        clean = load_audio(cut) if self.teacher_wav or self.augmenter is None else None
        if self.augmenter is None:
            example["student_wav"] = clean
        else:
            rng = np.random.default_rng([self.seed, epoch, index])
            example["student_wav"] = self.augmenter(cut, rng, clean=clean)
        if self.teacher_wav:
            example["teacher_wav"] = clean
        if self.index.arrays is not None:
            stacked = self.index.arrays.load(index).astype(np.float16)
            example["teacher_hidden"] = dict(zip(self.teacher_layers, stacked, strict=True))
        return example


class OneWindowPerUtteranceSampler(Sampler):
    """Every epoch: each utterance once, in a random order, with one of its windows drawn at
    random; rank ``r`` of ``R`` takes every R-th utterance of that order. Yields
    ``(epoch, window)`` pairs for :class:`TrainingWindows`.

    Without ``drop_last`` the order is padded with its own start to a multiple of ``R`` (as
    torch's ``DistributedSampler`` does), so every rank gets as many; with it, the tail is
    dropped.

    :param windows_per_utterance: ``TrainingWindows.windows_per_utterance``.
    """

    def __init__(
        self,
        windows_per_utterance: ArrayLike,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        counts = np.asarray(windows_per_utterance, dtype=np.int64)
        if counts.min(initial=1) < 1:
            raise ValueError("every utterance needs at least one window")
        self.counts = counts
        self.first_window = np.r_[0, np.cumsum(counts)[:-1]]
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch, self.start = 0, 0
        total = len(counts)
        per_rank = total // num_replicas if drop_last else -(-total // num_replicas)
        self.num_samples = per_rank

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch; a new epoch starts at its beginning."""
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def epoch_windows(self, epoch: int) -> np.ndarray:
        """This rank's windows of ``epoch``, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.counts)) if self.shuffle else np.arange(len(self.counts))
        picks = self.first_window + (rng.random(len(self.counts)) * self.counts).astype(np.int64)
        size = self.num_samples * self.num_replicas
        order = np.resize(order, size) if size > len(order) else order[:size]
        return picks[order[self.rank :: self.num_replicas]]

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch, windows = self.epoch, self.epoch_windows(self.epoch)[self.start :]
        self.start = 0  # a resumed epoch is resumed once
        return iter([(epoch, int(w)) for w in windows])

    def __len__(self) -> int:
        return self.num_samples - self.start

    def state_dict(self, consumed: int) -> Dict[str, int]:
        """The position to resume from, for a checkpoint.

        :param consumed: examples of the current epoch this rank has trained on, counted from
            the epoch's start (the loader prefetches, so the sampler cannot know it).
        """
        return {
            "epoch": self.epoch,
            "consumed": consumed,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
        }

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Resume: the next iteration continues ``state``'s epoch after its consumed examples."""
        if (state["seed"], state["num_replicas"]) != (self.seed, self.num_replicas):
            raise ValueError(
                f"cannot resume a sampler saved with seed {state['seed']} on "
                f"{state['num_replicas']} ranks with seed {self.seed} on {self.num_replicas}"
            )
        self.epoch, self.start = state["epoch"], state["consumed"]


def collate_windows(examples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack examples: ``student_wav [B, T]`` float32, ``speaker [B]`` and ``window [B]`` int64,
    and when present ``teacher_wav [B, T]`` float32 and ``teacher_hidden``
    ``{layer: [B, frames, dim]}`` float16 (what the KD losses index by layer)."""
    batch: Dict[str, Any] = {
        "student_wav": torch.from_numpy(np.stack([e["student_wav"] for e in examples])),
        "speaker": torch.tensor([e["speaker"] for e in examples], dtype=torch.int64),
        "window": torch.tensor([e["window"] for e in examples], dtype=torch.int64),
    }
    if "teacher_wav" in examples[0]:
        batch["teacher_wav"] = torch.from_numpy(np.stack([e["teacher_wav"] for e in examples]))
    if "teacher_hidden" in examples[0]:
        batch["teacher_hidden"] = {
            layer: torch.from_numpy(np.stack([e["teacher_hidden"][layer] for e in examples]))
            for layer in examples[0]["teacher_hidden"]
        }
    return batch
