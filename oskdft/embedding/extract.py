"""Stage 4: speaker embeddings of cuts, two views per utterance (the paper's evaluation).

- **full**: the whole utterance. Cuts are sorted by length, longest first, and grouped so that
  a batch's padded size (rows x its longest row) stays within ``batch_seconds`` of audio: the
  padding is small and the first batch is the largest, so memory runs out at once or never.
  Rows are zero-padded and the model gets their lengths; with a LayerNorm CNN (large
  checkpoints) a row's embedding equals the utterance's alone. Group-norm CNNs (base
  checkpoints) see the padding, as Hugging Face's feature extractors also do for them; sorting
  by length keeps it to a few frames.
- **crops**: ``num_crops`` crops of ``crop_seconds`` starting at
  ``linspace(0, len - crop, num_crops)`` (rounded down), as in the reference code. **An
  utterance shorter than one crop is first repeated (wrap-padded) to the crop length**, as the
  reference's reader does, so every crop is exactly ``crop_seconds`` long and all its crops
  are that same repeated utterance. Every crop takes the FT branch (the inference path),
  unless ``eval.original_crop_branches``: then, as the original code did, the first
  ``num_crops // 2`` crops of each utterance take the KD branch (:func:`~.views.kd_crops`).

:func:`extract_embeddings_job` is one job of stage 4: its share of each set (a deterministic
split balanced by duration, :mod:`oskdft.embedding.shards`), written as Kaldi ark/scp tables.
A job whose tables exist for the same model skips that set, so a rerun redoes only missing or
failed work.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.utils import compute_num_samples
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from oskdft.config import EvalConfig
from oskdft.data.audio import load_audio
from oskdft.embedding.shards import (
    check_job_range,
    job_marker_path,
    job_table_paths,
    read_cut_durations,
    set_tables,
    split_by_duration,
)
from oskdft.embedding.views import crop_audio, kd_crops, length_batches, pad_batch
from oskdft.layout import SAMPLE_RATE, manifest_path
from oskdft.model_dir import final_fingerprint, load_final
from oskdft.models.device import resolve_device
from oskdft.models.system import SpeakerModel
from oskdft.utils.io import Pathlike, atomic_write
from oskdft.utils.kaldi_io import read_scp_keys, write_ark_scp

Device = Union[str, torch.device]


# ---------------------------------------------------------------------------------------------
# Embedding


class _AudioBatches(Dataset):
    """Item ``i``: batch ``i`` of cuts, loaded (in a worker process when asked) by ``make``."""

    def __init__(self, batches: List[List[Cut]], make: Callable[[List[Cut]], Dict]):
        self.batches = batches
        self.make = make

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Dict:
        return self.make(self.batches[index])


def _load_batch(cuts: List[Cut], crop_samples: int, num_crops: int) -> Dict:
    """The model inputs of ``cuts``, each decoded once: the zero-padded full utterances and,
    with ``num_crops``, their crops (``num_crops`` rows per cut)."""
    audio = [load_audio(cut) for cut in cuts]
    wav, lengths = pad_batch(audio)
    batch = {
        "ids": [cut.id for cut in cuts],
        "wav": torch.from_numpy(wav),
        "lengths": torch.from_numpy(lengths),
    }
    if num_crops:
        batch["crops"] = torch.from_numpy(
            np.concatenate([crop_audio(samples, crop_samples, num_crops) for samples in audio])
        )
    return batch


def embed_cuts(
    model: SpeakerModel,
    cuts: Iterable[Cut],
    device: Device,
    batch_seconds: float = 200.0,
    progress: bool = False,
    num_workers: int = 0,
) -> Dict[str, np.ndarray]:
    """Full-utterance embeddings of ``cuts``: :func:`embed_views` without crops."""
    return embed_views(
        model, cuts, device, batch_seconds, num_crops=0, progress=progress, num_workers=num_workers
    )[0]


def embed_views(
    model: SpeakerModel,
    cuts: Iterable[Cut],
    device: Device,
    batch_seconds: float = 200.0,
    crop_seconds: float = 3.0,
    num_crops: int = 5,
    crop_batch_size: int = 64,
    progress: bool = False,
    num_workers: int = 0,
    num_kd_crops: int = 0,
) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Both views of ``cuts`` (see the module docstring), each cut decoded once: full
    utterances batched by length, and ``num_crops`` crops of ``crop_seconds`` per cut.

    :param model: a :class:`~oskdft.models.system.SpeakerModel` on ``device``; it runs in eval
        mode and is put back in the mode it was in.
    :param batch_seconds: the most padded audio per model call of full utterances.
    :param num_crops: 0 for no crops.
    :param crop_batch_size: crops per model call; a call holds whole utterances' crops,
        ``crop_batch_size // num_crops`` utterances (at least one).
    :param num_workers: processes loading audio ahead of the model (0: in this process).
    :param num_kd_crops: each utterance's first crops that take the KD branch
        (:func:`~oskdft.embedding.views.kd_crops`); the others take the FT branch.
    :return: ``(full, crops)``, cut id -> ``(D,)`` and cut id -> ``(num_crops, D)`` float32
        embeddings, in the order of ``cuts`` (``crops`` is empty without crops).
    """
    cuts = list(cuts)
    lengths = [compute_num_samples(cut.duration, SAMPLE_RATE) for cut in cuts]
    batches = length_batches(lengths, int(batch_seconds * SAMPLE_RATE))
    make = functools.partial(
        _load_batch, crop_samples=round(crop_seconds * SAMPLE_RATE), num_crops=num_crops
    )
    loader = DataLoader(
        _AudioBatches([[cuts[i] for i in batch] for batch in batches], make),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
    )
    crop_rows = max(1, crop_batch_size // max(num_crops, 1)) * num_crops
    full: Dict[str, np.ndarray] = {}
    crops: Dict[str, np.ndarray] = {}
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            tqdm(total=len(cuts), desc="embed", unit="utt", disable=not progress) as bar,
        ):
            for batch in loader:
                ids = batch["ids"]
                full.update(
                    zip(ids, _embed(model, batch["wav"], batch["lengths"], device), strict=True)
                )
                if num_crops:
                    rows = np.concatenate(
                        [
                            _embed_crops(model, part, num_crops, num_kd_crops, device)
                            for part in batch["crops"].split(crop_rows)
                        ]
                    )
                    crops.update(zip(ids, rows.reshape(len(ids), num_crops, -1), strict=True))
                bar.update(len(ids))
    finally:
        model.train(was_training)
    return (
        {cut.id: full[cut.id] for cut in cuts},
        {cut.id: crops[cut.id] for cut in cuts} if num_crops else {},
    )


def embed_eval_views(
    model: SpeakerModel,
    cuts: Iterable[Cut],
    device: Device,
    cfg: EvalConfig,
    crops: bool = True,
    progress: bool = False,
    num_workers: int = 0,
) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """:func:`embed_views` as a system's ``eval`` section ``cfg`` asks (batch size, crops and
    their branches), for stage 4 and validation; ``crops=False``: full utterances only."""
    num_crops = cfg.num_crops if crops else 0
    return embed_views(
        model,
        cuts,
        device,
        batch_seconds=cfg.batch_seconds,
        crop_seconds=cfg.crop_seconds,
        num_crops=num_crops,
        crop_batch_size=max(1, int(cfg.batch_seconds // cfg.crop_seconds)),
        progress=progress,
        num_workers=num_workers,
        num_kd_crops=kd_crops(num_crops, cfg.original_crop_branches),
    )


def _embed(
    model: SpeakerModel,
    wav: torch.Tensor,
    lengths: Optional[torch.Tensor],
    device: Device,
    num_kd_rows: int = 0,
) -> np.ndarray:
    lengths = None if lengths is None else lengths.to(device)
    if num_kd_rows:
        out = model.embed_rows(wav.to(device), lengths, num_kd_rows=num_kd_rows)
    else:
        out = model(wav.to(device), lengths)
    return out.float().cpu().numpy()


def _embed_crops(
    model: SpeakerModel, crops: torch.Tensor, num_crops: int, num_kd_crops: int, device: Device
) -> np.ndarray:
    """Embeddings of whole utterances' crops, ``[U * num_crops, T]`` in utterance order; each
    utterance's first ``num_kd_crops`` on the KD branch. In eval mode every row is embedded
    on its own, so the KD crops of all utterances can share one call."""
    if not num_kd_crops:
        return _embed(model, crops, None, device)
    grid = crops.reshape(-1, num_crops, crops.shape[1])
    kd_rows = grid[:, :num_kd_crops].reshape(-1, crops.shape[1])
    kd = _embed(model, kd_rows, None, device, num_kd_rows=len(kd_rows))
    ft = _embed(model, grid[:, num_kd_crops:].reshape(-1, crops.shape[1]), None, device)
    parts = [kd.reshape(len(grid), num_kd_crops, -1), ft.reshape(len(grid), -1, ft.shape[1])]
    return np.concatenate(parts, axis=1).reshape(len(crops), -1)


# ---------------------------------------------------------------------------------------------
# One job of stage 4


def extract_embeddings_job(
    final_dir: Pathlike,
    data_dir: Pathlike,
    embeddings_dir: Pathlike,
    sets: Sequence[str],
    job: int,
    num_jobs: int,
    device: Device = "auto",
    num_workers: int = 0,
    progress: bool = True,
    full_only_sets: Sequence[str] = (),
) -> List[str]:
    """Embed job ``job``'s share (1-based, of ``num_jobs``) of every set in ``sets`` with the
    model of ``final_dir``, both views (the full utterance alone for ``full_only_sets``), using
    the model config's ``eval`` section.

    Writes ``<embeddings_dir>/<set>/xvector.<job>.{ark,scp}``, ``xvector_crops.<job>.{ark,scp}``
    and the marker ``.done.<job>``. A set whose marker matches this model and whose tables hold
    exactly this share is skipped.

    :return: the sets embedded (not skipped).
    """
    check_job_range(job, num_jobs)
    embeddings_dir = Path(embeddings_dir)
    fingerprint = final_fingerprint(final_dir)
    todo: List[Tuple[str, Path, List[str]]] = []
    for set_name in sets:
        manifest = manifest_path(data_dir, set_name, "cuts")
        share = split_by_duration(read_cut_durations(manifest), num_jobs)[job - 1]
        set_dir = embeddings_dir / set_name
        if _job_done(set_dir, job, share, fingerprint, set_tables(set_name, full_only_sets)):
            logging.info(
                "%s: job %d already done (%d utterances), skipped", set_name, job, len(share)
            )
        else:
            todo.append((set_name, manifest, share))
    if not todo:
        return []
    device = resolve_device(device)
    model, cfg, _ = load_final(final_dir, device)
    for set_name, manifest, share in todo:
        set_dir = embeddings_dir / set_name
        marker = job_marker_path(set_dir, job)
        marker.unlink(missing_ok=True)
        wanted = set(share)
        cuts = [cut for cut in CutSet.from_jsonl_lazy(manifest) if cut.id in wanted]
        logging.info(
            "%s: job %d of %d embeds %d utterances (%.1f s of audio) on %s",
            set_name,
            job,
            num_jobs,
            len(cuts),
            sum(c.duration for c in cuts),
            device,
        )
        with_crops = len(set_tables(set_name, full_only_sets)) > 1
        vectors, crops = embed_eval_views(
            model,
            cuts,
            device,
            cfg.eval,
            crops=with_crops,
            progress=progress,
            num_workers=num_workers,
        )
        _write_table(set_dir, "xvector", job, vectors)
        if with_crops:
            _write_table(set_dir, "xvector_crops", job, crops)
        with atomic_write(marker) as f:
            f.write(fingerprint + "\n")
    return [set_name for set_name, _, _ in todo]


def _write_table(set_dir: Path, table: str, job: int, values: Dict[str, np.ndarray]) -> None:
    # Absolute paths in the scp: the tables read the same from any working directory.
    # abspath, not resolve(): the scp must name the shared directory as every node mounts it,
    # not this node's symlink target.
    ark, scp = job_table_paths(Path(os.path.abspath(set_dir)), table, job)
    write_ark_scp(ark, scp, values.items())


def _job_done(
    set_dir: Path, job: int, share: List[str], fingerprint: str, tables: Sequence[str]
) -> bool:
    marker = job_marker_path(set_dir, job)
    if not marker.is_file() or marker.read_text().strip() != fingerprint:
        return False
    for table in tables:
        scp = job_table_paths(set_dir, table, job)[1]
        if not scp.is_file() or read_scp_keys(scp) != share:
            return False
    return True
