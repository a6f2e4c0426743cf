"""What a teacher cache holds, and the directory name that keys it.

A cache is valid for exactly one teacher (its files, not only its path: a teacher retrained at
the same path gets a new cache), one set of hidden layers, one sample rate, one window layout
and one storage kind, and for one list of windows (stage 1's output, by content). All of it
goes into :class:`CacheSpec`, whose :attr:`~CacheSpec.key` names the directory:

    <teacher>_L<layers>_sr<rate>_w<window>h<hop>_<storage>_<hash of everything>

e.g. ``exp-teacher_ft-final-ssl_L4_sr16000_w2.0h1.0_fp16_3f2a9c1e``. The readable parts are for
people; the hash is what keeps a config that differs from ever reading a stale cache.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from huggingface_hub import snapshot_download

from oskdft.config import DataConfig, SystemConfig
from oskdft.data.storage import get_storage
from oskdft.losses.kd import kd_layers
from oskdft.models.teacher import load_teacher_config, num_frames
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike

_CHUNK = 1 << 20


@dataclass(frozen=True)
class CacheSpec:
    """Everything that determines a cache's content (also written to its ``meta.yaml``)."""

    teacher: str  # teacher.path as configured
    teacher_fingerprint: str  # sha256 of the teacher's files
    layers: Tuple[int, ...]  # hidden-state indices, stacked in this order
    hidden_size: int
    frames: int  # per window
    frame_shift: float  # seconds
    sample_rate: int
    window_seconds: float
    hop_seconds: float
    storage: str
    num_windows: int
    windows_fingerprint: str  # sha256 of the windows manifest's text

    @property
    def key(self) -> str:
        """The cache's directory name.

        >>> spec = CacheSpec("exp/teacher_ft/final/ssl", "ab", (4,), 32, 99, 0.02, 16000, 2.0,
        ...                  1.0, "fp16", 10, "cd")
        >>> spec.key.rsplit("_", 1)[0]
        'exp-teacher_ft-final-ssl_L4_sr16000_w2.0h1.0_fp16'
        """
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode())
        layers = "-".join(str(layer) for layer in self.layers)
        return (
            f"{_slug(self.teacher)}_L{layers}_sr{self.sample_rate}_w{self.window_seconds}"
            f"h{self.hop_seconds}_{self.storage}_{digest.hexdigest()[:8]}"
        )

    @property
    def array_shape(self) -> Tuple[int, int, int]:
        """Shape of one window's array: ``(layers, frames, hidden_size)``."""
        return (len(self.layers), self.frames, self.hidden_size)


def cache_spec(cfg: SystemConfig, data_cfg: DataConfig, windows_manifest: Pathlike) -> CacheSpec:
    """The spec of ``cfg``'s teacher cache over the windows in ``windows_manifest``; ``cfg``
    names its teacher (callers check with :meth:`SystemConfig.check_teacher`).

    Reads the teacher's config (not its weights) and hashes its files and the manifest: a few
    seconds for a 1.2 GB teacher and VoxCeleb2's windows.
    """
    get_storage(cfg.teacher.cache_storage)
    teacher = cfg.teacher.path
    assert teacher, "callers check the system names a teacher"
    teacher_config = load_teacher_config(teacher)
    window = round(data_cfg.window_seconds * data_cfg.sample_rate)
    num_windows, windows_fingerprint = manifest_fingerprint(windows_manifest)
    return CacheSpec(
        teacher=teacher,
        teacher_fingerprint=teacher_fingerprint(teacher),
        layers=tuple(kd_layers(cfg, teacher_config.num_hidden_layers)),
        hidden_size=teacher_config.hidden_size,
        frames=int(num_frames(teacher_config, window)),
        frame_shift=math.prod(teacher_config.conv_stride) / data_cfg.sample_rate,
        sample_rate=data_cfg.sample_rate,
        window_seconds=data_cfg.window_seconds,
        hop_seconds=data_cfg.window_hop_seconds,
        storage=cfg.teacher.cache_storage,
        num_windows=num_windows,
        windows_fingerprint=windows_fingerprint,
    )


def teacher_fingerprint(name_or_path: str) -> str:
    """sha256 over the names and bytes of every file of a teacher: a local Hugging Face
    directory, or a hub name's snapshot in the local Hugging Face cache."""
    root = Path(name_or_path).expanduser()
    if not root.is_dir():
        try:
            root = Path(snapshot_download(name_or_path, local_files_only=True))
        except Exception as e:  # the hub client raises several unrelated types
            raise InputError(
                name_or_path,
                f"teacher not found locally: {e}",
                hint="download it into the Hugging Face cache first",
            ) from e
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def manifest_fingerprint(path: Pathlike) -> Tuple[int, str]:
    """Lines and sha256 of a ``.jsonl.gz`` manifest's text. The text, not the file: gzip
    headers hold a time and a file name, which differ between identical stage-1 runs."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "windows manifest not found", hint="run stage 1 first")
    digest, lines = hashlib.sha256(), 0
    with gzip.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    return lines, digest.hexdigest()


def _slug(name: str) -> str:
    """A teacher path or hub name as one readable directory-name part.

    >>> _slug("facebook/wav2vec2-large-xlsr-53"), _slug("/abs/path/to/ssl/")
    ('facebook-wav2vec2-large-xlsr-53', 'abs-path-to-ssl')
    """
    return re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-")[-60:]
