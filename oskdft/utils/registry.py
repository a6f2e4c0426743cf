"""Name -> class registries filled by decorators (never if/elif chains on names)."""
from __future__ import annotations

from typing import Callable, Dict, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of classes or factories.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("ecapa")
    ... class Ecapa: ...
    >>> MODELS.get("ecapa").__name__
    'Ecapa'
    >>> MODELS.get("resnet")
    Traceback (most recent call last):
    ...
    KeyError: "unknown model 'resnet'; available: ecapa"
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._table: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._table:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._table[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._table:
            available = ", ".join(sorted(self._table)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; available: {available}")
        return self._table[name]

    def names(self) -> list:
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        return name in self._table
