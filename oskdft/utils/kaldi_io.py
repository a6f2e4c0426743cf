"""Kaldi ark/scp reading and writing (kaldiio), with atomic outputs.

Embeddings are stored as Kaldi ``ark`` files with an ``scp`` index, as Kaldi and WeSpeaker do,
so ``copy-vector scp:xvector.scp ark,t:-`` and kaldiio both read them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Tuple

import kaldiio
import numpy as np

from oskdft.utils.io import Pathlike, atomic_write, tmp_path_for


def write_ark_scp(ark: Pathlike, scp: Pathlike, items: Iterable[Tuple[str, np.ndarray]]) -> int:
    """Write ``(key, array)`` pairs to ``ark`` with an index ``scp``; both appear atomically.

    The scp names the ark by its final path, so the pair can be renamed into place together.
    Returns the number of entries written.

    >>> import tempfile, pathlib, numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_ark_scp(d / "x.ark", d / "x.scp", [("spk1-u1", np.ones(3, np.float32))])
    1
    >>> read_scp(d / "x.scp")["spk1-u1"].tolist()
    [1.0, 1.0, 1.0]
    """
    ark, scp = Path(ark), Path(scp)
    ark.parent.mkdir(parents=True, exist_ok=True)
    scp.parent.mkdir(parents=True, exist_ok=True)
    ark_tmp, scp_tmp = tmp_path_for(ark), tmp_path_for(scp)
    count = 0
    try:
        with kaldiio.WriteHelper(f"ark,scp:{ark_tmp},{scp_tmp}") as writer:
            for key, value in items:
                writer(key, np.ascontiguousarray(value))
                count += 1
        # kaldiio wrote the temporary ark name into the index: point it at the final name.
        lines = scp_tmp.read_text().splitlines()
        fixed = [line.replace(str(ark_tmp), str(ark), 1) for line in lines]
        scp_tmp.write_text("".join(f"{line}\n" for line in fixed))
        os.replace(ark_tmp, ark)
        os.replace(scp_tmp, scp)
    except BaseException:
        for tmp in (ark_tmp, scp_tmp):
            if tmp.exists():
                tmp.unlink()
        raise
    return count


def read_scp(scp: Pathlike) -> Dict[str, np.ndarray]:
    """Load every entry of an scp into memory, in file order."""
    with kaldiio.ReadHelper(f"scp:{scp}") as reader:
        return {key: np.asarray(value) for key, value in reader}


def read_scp_keys(scp: Pathlike) -> list:
    """The keys of an scp, without reading the arks."""
    with open(scp) as f:
        return [line.split(maxsplit=1)[0] for line in f if line.strip()]


def write_scp_index(scp: Pathlike, lines: Iterable[str]) -> None:
    """Write scp ``lines`` (each ending in a newline) sorted by key, atomically: ``LC_ALL=C``
    order, as Kaldi wants, which is Python's string order (UTF-8 keeps code-point order)."""
    with atomic_write(scp) as f:
        f.writelines(sorted(lines, key=lambda line: line.split(maxsplit=1)[0]))
