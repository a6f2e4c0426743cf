"""The one error type for bad user input: it names the file, the line and what to do."""

from __future__ import annotations

from typing import Optional

from oskdft.utils.io import Pathlike


class InputError(ValueError):
    """Bad input found in a user's file.

    >>> str(InputError("data/train/wav.scp", "duplicate key 'a'", line=3, hint="remove one"))
    "data/train/wav.scp:3: duplicate key 'a' (remove one)"
    """

    def __init__(
        self, path: Pathlike, problem: str, line: Optional[int] = None, hint: Optional[str] = None
    ):
        self.path, self.problem, self.line, self.hint = str(path), problem, line, hint
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}" + (f" ({hint})" if hint else ""))
