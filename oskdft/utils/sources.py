"""Which of oskdft's source files a script runs: what a done marker must hash besides the script
itself, so that an edit of the library code a stage runs reruns the stage.

>>> musan = PACKAGE_DIR / "recipes" / "musan.py"
>>> [str(p.relative_to(PACKAGE_DIR)) for p in imported_sources(musan)]
['data/audio.py', 'data/kaldi_dir.py', 'layout.py', 'utils/errors.py', 'utils/io.py']
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import oskdft
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike

PACKAGE_DIR = Path(oskdft.__file__).resolve().parent


def imported_sources(
    script: Pathlike, skip: Sequence[str] = (), package_dir: Pathlike = PACKAGE_DIR
) -> List[Path]:
    """The source files of the oskdft modules ``script`` imports, directly or through other
    oskdft modules, sorted (``script`` itself excluded). A module named by a prefix in ``skip``
    (e.g. ``oskdft.cli``) is neither listed nor followed.

    :param package_dir: the ``oskdft`` directory whose files are listed (run.sh: its checkout's).
    :raises InputError: naming ``script`` when it is missing or not valid Python.
    """
    script, package_dir = Path(script).resolve(), Path(package_dir).resolve()
    found, todo = set(), [script]
    while todo:
        path = todo.pop()
        for name in _oskdft_imports(path):
            if any(name == s or name.startswith(s + ".") for s in skip):
                continue
            source = _module_file(package_dir, name)
            if source is not None and source != script and source not in found:
                found.add(source)
                todo.append(source)
    return sorted(found)


def _oskdft_imports(path: Path) -> Iterator[str]:
    """The dotted names of the oskdft modules ``path`` imports: ``from oskdft.a import b`` gives
    ``oskdft.a`` and ``oskdft.a.b`` (b may be a module); absolute imports only (oskdft uses no
    others)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError) as error:
        raise InputError(path, f"cannot read its imports: {error}") from error
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] == "oskdft")


def _module_file(package_dir: Path, name: str) -> Optional[Path]:
    """The file of module ``oskdft.x.y`` (x/y.py or x/y/__init__.py), None when there is none
    (a function or class imported by name)."""
    base = package_dir.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None
