"""Name -> class registries filled by decorators (never if/elif chains on names)."""

from __future__ import annotations

from typing import Callable, Dict, Generic, Optional, Sequence, TypeVar

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
    >>> Registry("kd.loss", names=("mse",)).register("l1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    KeyError: "kd.loss 'l1' is not among the config's choices (mse): add it to ...CHOICES"
    """

    def __init__(self, kind: str, names: Optional[Sequence[str]] = None):
        """:param names: the only names that may be registered: the values a config key
        allows (``oskdft.config.CHOICES``), so that the config refuses every name the
        registry lacks; None: any name."""
        self.kind = kind
        self.allowed = None if names is None else tuple(names)
        self._table: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if self.allowed is not None and name not in self.allowed:
            raise KeyError(
                f"{self.kind} {name!r} is not among the config's choices "
                f"({', '.join(self.allowed)}): add it to oskdft.config.CHOICES"
            )

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
