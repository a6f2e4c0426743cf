"""Array storage of the teacher cache, as lhotse storage backends.

Stage 2 writes one file per shard of windows and attaches each window's array to its cut as a
lhotse ``TemporalArray``; anything that can read lhotse manifests loads it back. Two kinds
(``teacher.cache_storage``):

- ``fp16``: exact float16, this module's ``oskdft_fp16_chunky`` backend. Arrays are ``.npy``
  records appended to the shard's file; the storage key is ``"<byte offset>,<byte length>"``.
  A read opens the file, reads the record at its offset and closes it: no descriptor is
  shared between loader workers, and thousands of shards never exhaust the open-file limit.
  One file per shard keeps the file count low (VoxCeleb2: ~7.6M windows).
- ``lilcom``: lhotse's ``lilcom_chunky`` (lossy, about half the size; needs ``lilcom``).

Importing this module (``import oskdft.cache`` does) registers the fp16 backend with lhotse.
"""

from __future__ import annotations

import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Type

import numpy as np
from lhotse.features.io import (
    FeaturesReader,
    FeaturesWriter,
    LilcomChunkyWriter,
    register_reader,
    register_writer,
)

from oskdft.config import CHOICES, TeacherConfig
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike
from oskdft.utils.registry import Registry


@register_writer
class Float16ChunkyWriter(FeaturesWriter):
    """Appends float16 ``.npy`` records to one file.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "shard.f16"
    >>> with Float16ChunkyWriter(path) as writer:
    ...     array = writer.store_array("w1", np.arange(6.0).reshape(2, 3))
    >>> array.load().dtype, array.load().tolist()
    (dtype('float16'), [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    """

    name = "oskdft_fp16_chunky"

    def __init__(self, storage_path: Pathlike, *args, **kwargs):
        super().__init__()
        self.path = Path(storage_path)
        self.file = open(self.path, "wb")

    @property
    def storage_path(self) -> str:
        return str(self.path)

    def write(self, key: str, value: np.ndarray) -> str:
        record = io.BytesIO()
        np.save(record, np.asarray(value, dtype=np.float16), allow_pickle=False)
        offset = self.file.tell()
        self.file.write(record.getbuffer())
        return f"{offset},{record.tell()}"

    def close(self) -> None:
        self.file.close()

    def __exit__(self, *args, **kwargs) -> None:
        self.close()


@register_reader
class Float16ChunkyReader(FeaturesReader):
    """Reads what :class:`Float16ChunkyWriter` wrote."""

    name = "oskdft_fp16_chunky"

    def __init__(self, storage_path: Pathlike, *args, **kwargs):
        super().__init__()
        self.path = str(storage_path)

    def read(
        self, key: str, left_offset_frames: int = 0, right_offset_frames: Optional[int] = None
    ) -> np.ndarray:
        offset, length = (int(part) for part in key.split(","))
        fd = os.open(self.path, os.O_RDONLY)
        try:
            record = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(record) != length:
            raise OSError(f"{self.path}: cache record {key} is cut short")
        array = np.load(io.BytesIO(record), allow_pickle=False)
        return array[left_offset_frames:right_offset_frames]


@dataclass(frozen=True)
class Storage:
    """A ``teacher.cache_storage`` choice: the lhotse writer, the shard file suffix, the bytes
    per stored value used for the size estimate printed before writing, and the Python
    package it needs beyond lhotse."""

    writer: Type[FeaturesWriter]
    suffix: str
    bytes_per_value: float
    requires: Optional[str] = None


STORAGES: Registry = Registry(
    "teacher.cache_storage", names=CHOICES[TeacherConfig]["cache_storage"]
)
STORAGES.register("fp16")(Storage(Float16ChunkyWriter, ".f16", 2.0))
# lilcom's size depends on the values; 1 byte per value is a typical figure (an estimate).
# The suffix is the one lhotse's writer insists on.
STORAGES.register("lilcom")(Storage(LilcomChunkyWriter, ".lca", 1.0, requires="lilcom"))


def get_storage(name: str) -> Storage:
    """The storage ``teacher.cache_storage`` names, checked to be usable here.

    >>> get_storage("fp16").suffix
    '.f16'
    """
    if name not in STORAGES:
        raise InputError(
            "teacher.cache_storage",
            f"unknown storage {name!r}",
            hint=f"one of {', '.join(STORAGES.names())}",
        )
    storage = STORAGES.get(name)
    if storage.requires and importlib.util.find_spec(storage.requires) is None:
        raise InputError(
            "teacher.cache_storage",
            f"{name} needs the {storage.requires} package",
            hint=f"pip install {storage.requires}, or use fp16",
        )
    return storage
