"""Reading utils/done.sh's done markers from Python: the same hash, the same "is it current".

:func:`stage_hash` is ``stage_hash FILE... -- STRING...`` of utils/done.sh: the sha256 of one
line per file (``file <sha256 of its bytes>``) and one per string (``string <bytes> <text>``),
newline-separated and ended (tests/shell/test_done.py holds the two to the same digests).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from oskdft.utils.io import Pathlike


def stage_hash(files: Sequence[Pathlike], strings: Sequence[str] = ()) -> str:
    """utils/done.sh's ``stage_hash`` of ``files`` and ``strings``.

    :raises FileNotFoundError: when a file is missing.
    """
    lines = [f"file {hashlib.sha256(Path(f).read_bytes()).hexdigest()}" for f in files]
    lines += [f"string {len(s.encode())} {s}" for s in strings]
    # The shell joins the lines and its here-string adds one newline, also to no lines at all.
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()


def has_done(directory: Pathlike, name: str, digest: str) -> bool:
    """utils/done.sh's ``has_done``: ``directory/.<name>.done`` exists and records ``digest``."""
    marker = Path(directory) / f".{name}.done"
    return marker.is_file() and f"hash: {digest}" in marker.read_text().splitlines()
