"""File helpers that never leave a half-written output under its final name.

Every writer in oskdft goes through :func:`atomic_write` or :func:`atomic_dir`: the data is
written to a temporary name next to the target and renamed into place only on success, so an
interrupted or failed run leaves earlier results untouched and nothing a later stage could
mistake for complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Union

Pathlike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_write(path: Pathlike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file next to ``path``; rename it to ``path`` if the block succeeds.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(d / "a.txt") as f:
    ...     _ = f.write("hello")
    >>> (d / "a.txt").read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: Pathlike) -> Iterator[Path]:
    """Yield a temporary path with the same suffix as ``path`` for writers that take a file
    name (lhotse ``to_file``, ``torch.save``, kaldiio); rename it to ``path`` on success.

    The suffix is kept because lhotse picks the format (``.jsonl.gz``) from the name. The file
    is synced before the rename and the directory after it, so a crash never leaves an empty
    file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        yield tmp
        if tmp.is_file():
            _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)  # makes the rename itself durable
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: Pathlike) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``path`` in one rename.

    An existing ``path`` is kept until the new one is complete, then moved aside and deleted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_path_for(path: Path) -> Path:
    """A unique temporary name in ``path``'s directory that keeps its full suffix."""
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    fd, name = tempfile.mkstemp(prefix=f".{stem}.tmp.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)
