"""Stage 0: validated Kaldi data dirs -> lhotse manifests, one triple per set.

For a set ``<set>`` (the data dir ``data/<set>/``) it writes, atomically, to ``data/manifests/``:

- ``<set>_recordings.jsonl.gz``: one ``Recording`` per wav.scp line, id = its key, resampled to
  16 kHz (lhotse records the ``Resample`` transform, so the file's own rate stays visible). A
  piped ``<command> |`` entry becomes an ``AudioSource`` of type ``command``: lhotse **runs
  that command** every time the audio is loaded.
- ``<set>_supervisions.jsonl.gz`` (sets with utt2spk only): one ``SupervisionSegment`` per
  utterance, id = utterance id, ``speaker`` = its utt2spk entry, channel 0, spanning the whole
  recording or its ``segments`` range.
- ``<set>_cuts.jsonl.gz``: one ``MonoCut`` per utterance, id = utterance id, on channel 0 of the
  16 kHz recording (the audio rule of :mod:`oskdft.data.audio`), carrying its supervision.

Recording ids come from wav.scp, never from file names, so they are unique even in VoxCeleb
trees where every speaker has a ``00001.wav`` (lhotse's ``RecordingSet.from_dir`` is not used).
Cuts are built one by one rather than by ``CutSet.from_manifests``, which makes a ``MultiCut``
of every multi-channel recording and names cuts ``<recording>-<index>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from oskdft.data.audio import mono_cut
from oskdft.data.kaldi_dir import MIN_EVAL_SECONDS, DataDir, validate_data_dir
from oskdft.layout import CHANNEL, MANIFEST_KINDS, SAMPLE_RATE, manifest_path
from oskdft.utils.io import Pathlike, atomic_path


@dataclass
class Manifests:
    """The lhotse manifests of one data dir."""

    recordings: RecordingSet
    supervisions: Optional[SupervisionSet]  # None: the set has no speakers
    cuts: CutSet


@dataclass
class SetStats:
    """What stage 0 reports for a set."""

    name: str
    speakers: Optional[int]  # None: the set has no speakers
    utterances: int
    hours: float


def build_manifests(data: DataDir, recordings: Mapping[str, Recording]) -> Manifests:
    """The manifests of a validated data dir (see the module docstring).

    :param recordings: id -> ``Recording`` of every wav.scp entry (from ``validate_data_dir``).
    """
    resampled = {rec_id: recordings[rec_id].resample(SAMPLE_RATE) for rec_id in data.wav_scp}
    supervisions, cuts = [], []
    for utt in data.utterances:
        if data.segments is None:
            recording, start = resampled[utt], 0.0
            duration = recording.duration
        else:
            segment = data.segments[utt]
            recording, start = resampled[segment.recording_id], segment.start
            # Kaldi tolerates segments that overshoot their recording a little: clip them.
            end = recording.duration if segment.end is None else segment.end
            duration = min(end, recording.duration) - start
        cut_supervisions = []
        if data.utt2spk is not None:
            supervision = SupervisionSegment(
                id=utt,
                recording_id=recording.id,
                start=start,
                duration=duration,
                channel=CHANNEL,
                speaker=data.utt2spk[utt],
            )
            supervisions.append(supervision)
            cut_supervisions.append(supervision.with_offset(-start))
        cuts.append(
            mono_cut(
                recording, cut_id=utt, start=start, duration=duration, supervisions=cut_supervisions
            )
        )
    return Manifests(
        recordings=RecordingSet.from_recordings(resampled.values()),
        supervisions=(
            SupervisionSet.from_segments(supervisions) if data.utt2spk is not None else None
        ),
        cuts=CutSet.from_cuts(cuts),
    )


def save_manifests(manifests: Manifests, data_dir: Pathlike, set_name: str) -> None:
    """Write a set's manifests to ``<data_dir>/manifests/`` atomically (lhotse's ``to_file``
    is not atomic)."""
    for kind in MANIFEST_KINDS:
        manifest = getattr(manifests, kind)
        if manifest is not None:
            with atomic_path(manifest_path(data_dir, set_name, kind)) as tmp:
                manifest.to_file(tmp)


def set_stats(name: str, manifests: Manifests) -> SetStats:
    speakers = None
    if manifests.supervisions is not None:
        speakers = len({s.speaker for s in manifests.supervisions})
    return SetStats(
        name=name,
        speakers=speakers,
        utterances=len(manifests.cuts),
        hours=sum(cut.duration for cut in manifests.cuts) / 3600,
    )


def format_stats(stats: Sequence[SetStats]) -> str:
    """A table of speakers, utterances and hours per set.

    >>> print(format_stats([SetStats("train", 4, 12, 0.01), SetStats("rirs", None, 3, 0.5)]))
    set    speakers  utterances     hours
    train         4          12      0.01
    rirs          -           3      0.50
    """
    width = max([len("set")] + [len(s.name) for s in stats])
    lines = [f"{'set':<{width}}  speakers  utterances     hours"]
    for s in stats:
        speakers = "-" if s.speakers is None else str(s.speakers)
        lines.append(f"{s.name:<{width}}  {speakers:>8}  {s.utterances:>10}  {s.hours:>8.2f}")
    return "\n".join(lines)


def prepare_manifests(
    data_dir: Pathlike,
    train_set: str,
    eval_sets: Sequence[str] = (),
    aug_sets: Sequence[str] = (),
    min_utts_per_speaker: int = 2,
    num_threads: int = 8,
    min_eval_seconds: float = MIN_EVAL_SECONDS,
) -> List[SetStats]:
    """Stage 0: validate ``<data_dir>/<set>/`` for every set and write its manifests.

    The training set needs speakers with ``min_utts_per_speaker`` utterances or more;
    evaluation sets need speakers, at least one ``trials_*`` file and utterances of
    ``min_eval_seconds`` or more; augmentation sets need only wav.scp. Sets are done one after
    the other; a failure leaves the manifests of earlier sets written and complete, and no done
    marker.

    :return: speakers, utterances and hours per set (also logged as a table).
    """
    rules: List[Tuple[str, Dict[str, Any]]] = [
        (train_set, dict(require_speakers=True, min_utts_per_speaker=min_utts_per_speaker))
    ]
    rules += [
        (name, dict(require_speakers=True, require_trials=True, min_seconds=min_eval_seconds))
        for name in eval_sets
    ]
    rules += [(name, dict(require_speakers=False)) for name in aug_sets]
    stats = []
    for name, set_rules in rules:
        data, recordings = validate_data_dir(
            Path(data_dir) / name, num_threads=num_threads, **set_rules
        )
        manifests = build_manifests(data, recordings)
        save_manifests(manifests, data_dir, name)
        stats.append(set_stats(name, manifests))
        logging.info("%s: %d utterances valid, manifests written", name, len(manifests.cuts))
    logging.info("data sets:\n%s", format_stats(stats))
    return stats
