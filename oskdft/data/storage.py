"""Array storage of the teacher cache: the one module that knows its on-disk formats.

Stage 2 writes one file per shard of windows and attaches each window's array to its cut as a
lhotse ``TemporalArray``; anything that can read lhotse manifests loads it back. Two kinds
(``teacher.cache_storage``), each a :class:`Storage`:

- ``fp16``: exact float16, this module's ``oskdft_fp16_chunky`` backend. Arrays are ``.npy``
  records appended to the shard's file; the storage key is ``"<byte offset>,<byte length>"``.
  A read opens the file, reads the record at its offset and closes it: no descriptor is
  shared between loader workers, and thousands of shards never exhaust the open-file limit.
  One file per shard keeps the file count low (VoxCeleb2: ~7.6M windows).
- ``lilcom``: lhotse's ``lilcom_chunky`` (lossy, about half the size; needs ``lilcom``).

Stage 3 reads them back through :class:`StoredArrays`, which keeps millions of locations
compact. Importing this module registers the fp16 backend with lhotse; ``oskdft.data.dataset``
imports it, so whatever reads training windows can load cached arrays.
"""

from __future__ import annotations

import importlib.util
import io
import os
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import numpy as np
from lhotse.array import Array, TemporalArray
from lhotse.features.io import (
    FeaturesReader,
    FeaturesWriter,
    LilcomChunkyWriter,
    get_reader,
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


def fp16_record(key: str) -> Tuple[int, int]:
    """The byte offset and length of the record a ``oskdft_fp16_chunky`` key names.

    >>> fp16_record("128,2176")
    (128, 2176)
    """
    offset, length = (int(part) for part in key.split(","))
    return offset, length


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
        offset, length = fp16_record(key)
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
    per stored value used for the size estimate printed before writing, the type its values
    are read back in when it stores them exactly (None: a lossy codec), where a key's record
    ends in its file (None: keys are not byte ranges), and the Python package it needs beyond
    lhotse."""

    writer: Type[FeaturesWriter]
    suffix: str
    bytes_per_value: float
    exact_dtype: Optional[type] = None
    record: Optional[Callable[[str], Tuple[int, int]]] = None
    requires: Optional[str] = None

    def as_stored(self, values: np.ndarray) -> np.ndarray:
        """``values`` as they will be read back, where that is known before writing: a value
        that is finite here but not there (float16 overflow) is caught before it is stored.

        >>> get_storage("fp16").as_stored(np.array([1.0, 1e5])).tolist()
        [1.0, inf]
        """
        if self.exact_dtype is None:
            return values
        with np.errstate(over="ignore"):  # the overflow is what the caller checks for
            return values.astype(self.exact_dtype)

    def record_end(self, key: str) -> int:
        """The file size the record of ``key`` needs, 0 when unknown: a truncated file is
        caught without reading it.

        >>> get_storage("fp16").record_end("128,2176")
        2304
        """
        if self.record is None:
            return 0
        offset, length = self.record(key)
        return offset + length


STORAGES: Registry = Registry(
    "teacher.cache_storage", names=CHOICES[TeacherConfig]["cache_storage"]
)
STORAGES.register("fp16")(
    Storage(Float16ChunkyWriter, ".f16", 2.0, exact_dtype=np.float16, record=fp16_record)
)
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


class StoredArrays:
    """Where the arrays of a manifest's cuts are, in the order added, kept compact: one storage
    type and shape for all, a file index and a key per cut. Stage 3 holds millions of them, and
    forked loader workers share them without copying.

    :param manifest: the manifest being read, named in errors.
    """

    def __init__(self, manifest: Pathlike):
        self.manifest = manifest
        self.storage_type: Optional[str] = None
        self.shape: List[int] = []  # of every array, set by the first
        self.paths: List[str] = []
        self._path_of: Dict[str, int] = {}
        self._path_index = array("q")
        self._keys: List[bytes] = []
        self._packed_keys = np.zeros(0, dtype=np.bytes_)

    def add(self, serialised: Dict[str, Any], cut_id: str, line: int) -> None:
        """Record where cut ``cut_id``'s array is: ``serialised`` is its ``TemporalArray`` as
        lhotse writes it in a manifest, at ``line``."""
        stored = TemporalArray.from_dict(serialised).array
        if self.storage_type is None:
            if get_reader(stored.storage_type) is None:
                raise InputError(
                    self.manifest,
                    f"{cut_id}: no reader for arrays stored as {stored.storage_type!r}",
                    line=line,
                    hint=f"stage 2 stores arrays as one of {', '.join(STORAGES.names())}",
                )
            self.storage_type, self.shape = stored.storage_type, list(stored.shape)
        if (stored.storage_type, list(stored.shape)) != (self.storage_type, self.shape):
            raise InputError(
                self.manifest,
                f"{cut_id}: array stored as {stored.storage_type} {list(stored.shape)}, unlike "
                f"the ones before it ({self.storage_type} {self.shape})",
                line=line,
                hint="rerun stage 2",
            )
        path = stored.storage_path
        self._path_index.append(self._path_of.setdefault(path, len(self._path_of)))
        self._keys.append(stored.storage_key.encode())

    def finish(self) -> StoredArrays:
        """Compact what :meth:`add` collected: call it once, after the last."""
        self.paths = list(self._path_of)
        # One contiguous array, not millions of bytes objects.
        self._packed_keys = np.array(self._keys, dtype=np.bytes_)
        self._keys = []
        return self

    def __len__(self) -> int:
        return len(self._path_index)

    def load(self, index: int) -> np.ndarray:
        """The array of the ``index``-th cut added."""
        return Array(
            storage_type=self.storage_type,
            storage_path=self.paths[self._path_index[index]],
            storage_key=self._packed_keys[index].decode(),
            shape=self.shape,
        ).load()
