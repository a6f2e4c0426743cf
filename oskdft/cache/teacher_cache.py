"""Stage 2: run the frozen teacher over the clean training windows once, and store the hidden
states the KD loss reads, so training never runs the teacher.

A cache lives in ``<cache_root>/<key>/`` (:mod:`oskdft.cache.key`):

- ``shards/<s>.jsonl.gz``: windows ``s * shard_size ...`` of stage 1's manifest, each with a
  ``teacher_hidden`` ``TemporalArray`` (``[layers, frames, dim]``, time on axis 1);
- ``shards/<s>.f16`` (or ``.lca``): their arrays (:mod:`oskdft.data.storage`);
- ``cuts.jsonl.gz``: every window with its array, written by the merge after verification;
- ``meta.yaml``: the spec, the counts and the size.

Job ``j`` of ``N`` writes shards ``s`` with ``s % N == j - 1``. Shards do not depend on ``N``,
and a shard counts as done once its ``.jsonl.gz`` exists, which is renamed into place after its
arrays, both from temporary names: an interrupted run keeps every finished shard and redoes the
rest, and never leaves a half-written shard under its final name. The merge checks that every
window is there exactly once, in order, with the expected shape, and that no array file is cut
short (where the storage's keys are byte ranges); the values were checked to be finite by the
job that stored them.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch
import yaml
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.serialization import deserialize_item
from lhotse.utils import fastcopy
from tqdm import tqdm

from oskdft.cache.key import CacheSpec, cache_spec
from oskdft.config import NO_KD, DataConfig, SystemConfig, load_config, load_data_config
from oskdft.data.audio import load_audio
from oskdft.data.dataset import TEACHER_FIELD
from oskdft.data.storage import Storage, get_storage
from oskdft.layout import windows_path
from oskdft.models.device import resolve_device
from oskdft.models.teacher import load_teacher
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_path, atomic_write

WINDOWS_PER_SHARD = 1000
SHARD_DIR = "shards"
CUTS_NAME = "cuts.jsonl.gz"
META_NAME = "meta.yaml"

# The teacher as the cache sees it: a [B, T] waveform batch -> the hidden-states tuple.
Teacher = Callable[[torch.Tensor], Sequence[torch.Tensor]]


@dataclass
class TeacherCache:
    """A complete cache, for stage 3."""

    path: Path
    spec: CacheSpec

    @property
    def cuts_path(self) -> Path:
        return self.path / CUTS_NAME

    @property
    def layers(self) -> List[int]:
        return list(self.spec.layers)


# ---------------------------------------------------------------------------------------------
# Stage entry points (paths in, as run.sh calls them)


def cache_teacher_job(
    config: Pathlike,
    data_config: Pathlike,
    data_dir: Pathlike,
    cache_root: Pathlike,
    job: int,
    num_jobs: int,
    overrides: Sequence[str] = (),
    batch_size: int = 8,
    device: str = "auto",
    shard_size: int = WINDOWS_PER_SHARD,
) -> Optional[Path]:
    """Write job ``job``'s shards (1-based, of ``num_jobs``) of the teacher cache of system
    ``config``. Systems without KD or with an online teacher need none: logged, returns None.

    :return: the cache directory.
    """
    cfg = load_config(config, overrides)
    if not _needs_cache(cfg, config):
        return None
    if not 1 <= job <= num_jobs:
        raise ValueError(f"job {job} is not in 1..{num_jobs}")
    spec = cache_spec(cfg, load_data_config(data_config), windows_path(data_dir))
    out_dir = Path(cache_root) / spec.key
    if _is_complete(out_dir):
        return out_dir
    log_size_estimate(spec, job, num_jobs, shard_size)
    torch_device = resolve_device(device)
    teacher = load_teacher(cfg.teacher.path).to(torch_device)
    write_job_shards(
        windows_path(data_dir),
        out_dir,
        spec,
        teacher,
        job,
        num_jobs,
        shard_size=shard_size,
        batch_size=batch_size,
        device=torch_device,
    )
    return out_dir


def merge_teacher_cache(
    config: Pathlike,
    data_config: Pathlike,
    data_dir: Pathlike,
    cache_root: Pathlike,
    num_jobs: int,
    overrides: Sequence[str] = (),
    shard_size: int = WINDOWS_PER_SHARD,
) -> Optional[Path]:
    """Verify the shards of system ``config``'s cache and write ``cuts.jsonl.gz`` and
    ``meta.yaml`` (``num_jobs`` only names the job of a missing shard)."""
    cfg = load_config(config, overrides)
    if not _needs_cache(cfg, config):
        return None
    spec = cache_spec(cfg, load_data_config(data_config), windows_path(data_dir))
    out_dir = Path(cache_root) / spec.key
    if not _is_complete(out_dir):
        merge_shards(windows_path(data_dir), out_dir, spec, num_jobs, shard_size=shard_size)
    return out_dir


def open_teacher_cache(
    cfg: SystemConfig, data_cfg: DataConfig, data_dir: Pathlike, cache_root: Pathlike
) -> Optional[TeacherCache]:
    """Stage 3: the complete cache of ``cfg``'s teacher over ``data_dir``'s windows, or None
    when the system needs none (no KD, or an online teacher).

    :raises InputError: when stage 2 has not completed this cache (e.g. the config changed).
    """
    if not cfg.caches_teacher():
        return None
    spec = cache_spec(cfg, data_cfg, windows_path(data_dir))
    cache = TeacherCache(Path(cache_root) / spec.key, spec)
    if not cache.cuts_path.is_file():
        raise InputError(
            cache.path,
            "no complete teacher cache for this teacher, these layers and these windows",
            hint="run stage 2 (run.sh --stage 2)",
        )
    return cache


def _needs_cache(cfg: SystemConfig, config: Pathlike) -> bool:
    if cfg.caches_teacher():
        cfg.check_teacher(config)
        return True
    reason = "kd.loss is none" if cfg.kd.loss == NO_KD else "the teacher runs online"
    logging.info("%s: no teacher cache needed (%s); nothing to do", config, reason)
    return False


def _is_complete(out_dir: Path) -> bool:
    """A merged cache never changes (its key fixes the content): systems that share a teacher
    and layers share it, and only the first writes and verifies it."""
    if (out_dir / CUTS_NAME).is_file():
        logging.info("teacher cache %s is complete; nothing to do", out_dir)
        return True
    return False


# ---------------------------------------------------------------------------------------------
# Writing


def num_shards(spec: CacheSpec, shard_size: int) -> int:
    return math.ceil(spec.num_windows / shard_size)


def estimated_bytes(spec: CacheSpec, num_windows: int) -> int:
    """Disk size of ``num_windows`` windows' arrays (lilcom: an estimate)."""
    values = math.prod(spec.array_shape)
    return int(num_windows * values * get_storage(spec.storage).bytes_per_value)


def log_size_estimate(spec: CacheSpec, job: int, num_jobs: int, shard_size: int) -> None:
    """Print, before anything is written, what the cache will take on disk."""
    own = sum(
        min(shard_size, spec.num_windows - s * shard_size)
        for s in range(job - 1, num_shards(spec, shard_size), num_jobs)
    )
    layers, frames, dim = spec.array_shape
    logging.info(
        "teacher cache %s: %d windows x %d layers x %d frames x %d dims (%s) = about %s on "
        "disk; this job (%d of %d): %d windows, about %s",
        spec.key,
        spec.num_windows,
        layers,
        frames,
        dim,
        spec.storage,
        human_bytes(estimated_bytes(spec, spec.num_windows)),
        job,
        num_jobs,
        own,
        human_bytes(estimated_bytes(spec, own)),
    )


def human_bytes(size: float) -> str:
    """
    >>> human_bytes(1536), human_bytes(3 * 1024**4)
    ('1.5 KiB', '3.0 TiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def shard_paths(out_dir: Path, shard: int, storage: str) -> Tuple[Path, Path]:
    """The cuts manifest and the array file of a shard."""
    name = f"{shard:06d}"
    shard_dir = out_dir / SHARD_DIR
    return shard_dir / f"{name}.jsonl.gz", shard_dir / f"{name}{get_storage(storage).suffix}"


def write_job_shards(
    manifest: Path,
    out_dir: Path,
    spec: CacheSpec,
    teacher: Teacher,
    job: int,
    num_jobs: int,
    shard_size: int = WINDOWS_PER_SHARD,
    batch_size: int = 8,
    device: Union[str, torch.device] = "cpu",
) -> int:
    """Write this job's shards that are not done yet (``teacher`` runs on ``device``).

    :return: how many it wrote.
    """
    own = range(job - 1, num_shards(spec, shard_size), num_jobs)
    todo = [s for s in own if not shard_paths(out_dir, s, spec.storage)[0].exists()]
    logging.info(
        "job %d of %d: %d shards to write, %d already done",
        job,
        num_jobs,
        len(todo),
        len(own) - len(todo),
    )
    total = sum(min(shard_size, spec.num_windows - s * shard_size) for s in todo)
    with tqdm(
        total=total, desc=f"teacher cache, job {job}", unit="window", mininterval=30
    ) as progress:
        for shard, windows in read_shards(manifest, shard_size, set(todo)):
            write_shard(out_dir, shard, windows, teacher, spec, batch_size, device)
            progress.update(len(windows))
    return len(todo)


def read_shards(
    manifest: Path, shard_size: int, wanted: Set[int]
) -> Iterator[Tuple[int, List[Cut]]]:
    """The windows of each ``wanted`` shard, in order; other lines are skipped unparsed."""
    lines: List[str] = []
    current = -1  # the shard of the line before: none yet
    with gzip.open(manifest, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            shard = i // shard_size
            if shard != current and lines:
                yield current, [deserialize_item(json.loads(text)) for text in lines]
                lines = []
            current = shard
            if shard in wanted:
                lines.append(line)
    if lines:
        yield current, [deserialize_item(json.loads(text)) for text in lines]


def write_shard(
    out_dir: Path,
    shard: int,
    windows: Sequence[Cut],
    teacher: Teacher,
    spec: CacheSpec,
    batch_size: int = 8,
    device: Union[str, torch.device] = "cpu",
) -> None:
    """Run ``teacher`` on the clean ``windows`` and write the shard (arrays first, then the
    cuts manifest that marks it done), atomically."""
    cuts_path, data_path = shard_paths(out_dir, shard, spec.storage)
    storage = get_storage(spec.storage)
    cuts_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in cuts_path.parent.glob(f".{shard:06d}.tmp.*"):  # left by a killed run
        stale.unlink()
    # Leaving the with-block renames data_path before cuts_path.
    with atomic_path(cuts_path) as cuts_tmp, atomic_path(data_path) as data_tmp:
        with (
            storage.writer(data_tmp) as arrays,
            CutSet.open_writer(cuts_tmp) as cut_writer,
        ):
            for first in range(0, len(windows), batch_size):
                batch = windows[first : first + batch_size]
                wav = torch.from_numpy(np.stack([load_audio(w) for w in batch])).to(device)
                with torch.inference_mode():
                    hidden_states = teacher(wav)
                stacked = torch.stack([hidden_states[i] for i in spec.layers], dim=1)
                for window, array in zip(batch, stacked.float().cpu().numpy(), strict=True):
                    _check_array(window, array, spec, storage)
                    manifest = arrays.store_array(
                        window.id,
                        array,
                        frame_shift=spec.frame_shift,
                        temporal_dim=1,
                        start=window.start,
                    )
                    # The arrays are written under a temporary name; point at the final one.
                    manifest = fastcopy(
                        manifest, array=fastcopy(manifest.array, storage_path=str(data_path))
                    )
                    cut_writer.write(window.with_custom(TEACHER_FIELD, manifest))


def _check_array(window: Cut, array: np.ndarray, spec: CacheSpec, storage: Storage) -> None:
    if tuple(array.shape) != spec.array_shape:
        raise RuntimeError(
            f"window {window.id}: teacher output {array.shape}, expected {spec.array_shape}"
        )
    if not np.isfinite(storage.as_stored(array)).all():
        raise RuntimeError(
            f"window {window.id}: teacher output is not finite in {spec.storage} "
            f"(max |x| = {np.abs(array).max():.4g}); use teacher.cache_storage: lilcom"
        )


# ---------------------------------------------------------------------------------------------
# Merging and verification


def merge_shards(
    manifest: Path,
    out_dir: Path,
    spec: CacheSpec,
    num_jobs: int,
    shard_size: int = WINDOWS_PER_SHARD,
) -> int:
    """Check every shard against the windows manifest (each window once, in order, with an
    array of the expected shape), then write ``cuts.jsonl.gz`` and ``meta.yaml``. Nothing is
    written when a check fails.

    The arrays themselves are not read back: each job checked shape and finiteness before it
    stored them, and a shard appears only once complete. Reading VoxCeleb2's cache (over a
    terabyte) again on the host that runs the merge would cost hours. Only the size of each
    array file is checked against the records its cuts point at (where keys are byte ranges).

    :return: the number of windows.
    """
    total_shards = num_shards(spec, shard_size)
    missing = [
        s for s in range(total_shards) if not shard_paths(out_dir, s, spec.storage)[0].exists()
    ]
    if missing:
        jobs = sorted({s % num_jobs + 1 for s in missing})
        raise InputError(
            out_dir / SHARD_DIR,
            f"{len(missing)} of {total_shards} shards are missing "
            f"(jobs {', '.join(map(str, jobs))} of {num_jobs} did not finish)",
            hint="rerun stage 2: finished shards are kept",
        )
    expected = _window_ids(manifest)
    storage = get_storage(spec.storage)
    count, size = 0, 0
    with atomic_path(out_dir / CUTS_NAME) as tmp, CutSet.open_writer(tmp) as writer:
        for shard in tqdm(
            range(total_shards), desc="verify teacher cache", unit="shard", mininterval=30
        ):
            cuts_path, data_path = shard_paths(out_dir, shard, spec.storage)
            data_size = data_path.stat().st_size
            needed = 0
            for line, cut in enumerate(CutSet.from_jsonl_lazy(cuts_path), 1):
                _verify_window(cut, next(expected, None), spec, cuts_path, line)
                key = getattr(cut, TEACHER_FIELD).array.storage_key
                needed = max(needed, storage.record_end(key))
                writer.write(cut)
                count += 1
            if needed > data_size:
                raise InputError(
                    data_path,
                    f"{data_size} bytes, but {cuts_path.name} points "
                    f"up to byte {needed}: the file is cut short",
                    hint="delete this shard's files and rerun stage 2",
                )
            size += data_size
        if next(expected, None) is not None or count != spec.num_windows:
            raise InputError(
                out_dir / SHARD_DIR,
                f"the shards hold {count} windows, the manifest {spec.num_windows}",
                hint="delete the cache directory and rerun stage 2",
            )
        # meta.yaml before cuts.jsonl.gz, whose rename on leaving the block marks the cache
        # complete.
        meta = {
            **asdict(spec),
            "layers": list(spec.layers),
            "num_shards": total_shards,
            "shard_size": shard_size,
            "bytes": size,
        }
        with atomic_write(out_dir / META_NAME) as f:
            yaml.safe_dump(meta, f, sort_keys=False)
    logging.info(
        "teacher cache %s: %d windows verified, %s on disk", out_dir, count, human_bytes(size)
    )
    return count


def _window_ids(manifest: Path) -> Iterator[str]:
    with gzip.open(manifest, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["id"]


def _verify_window(
    cut: Cut, expected_id: Optional[str], spec: CacheSpec, path: Path, line: int
) -> None:
    hint = "delete this shard's files and rerun stage 2"
    if cut.id != expected_id:
        raise InputError(
            path, f"window {cut.id}, but the manifest has {expected_id} here", line=line, hint=hint
        )
    if not cut.has_custom(TEACHER_FIELD):
        raise InputError(path, f"window {cut.id} has no {TEACHER_FIELD}", line=line, hint=hint)
    shape = tuple(getattr(cut, TEACHER_FIELD).shape)
    if shape != spec.array_shape:
        raise InputError(
            path,
            f"window {cut.id}: array of shape {shape}, expected {spec.array_shape}",
            line=line,
            hint=hint,
        )
