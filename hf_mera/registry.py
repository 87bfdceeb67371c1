"""One registry pattern for every "name in YAML → class or function" lookup in hf_mera.

mergekit keeps one `REGISTERED_MERGE_METHODS` and a decorator; we do the same, once, and reject a
second registration of a name (mergekit silently overwrites, which turns an import-order accident into
a different experiment)::

    CONNECTORS = Registry("connector", base=nn.Module)

    @CONNECTORS.register("mlp2x_gelu")
    class MLP2xGELU(nn.Module): ...

    CONNECTORS.get("mlp2x_gelu")            # the class
    CONNECTORS.get("mlpx", where="model.modalities.image.connector_type")
    # ValueError: model.modalities.image.connector_type: unknown connector 'mlpx'; known: [...]

A `Registry` is read-only from outside except through `register`, so what a name means is decided
where the object is defined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → objects of one kind (classes or functions), each name registered once.

    Args:
        kind: what is registered, as a user reads it in an error ("connector", "merge method").
        base: if given, every registered object must be a subclass of it.
        on_register: called as `on_register(name, obj)` after a successful registration (e.g. to
            set a class attribute `name`).
    """

    def __init__(
        self,
        kind: str,
        *,
        base: type | None = None,
        on_register: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self._on_register = on_register
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = None) -> Any:
        """Register `obj` as `name`; without `obj`, return a decorator that does."""
        if obj is None:
            return lambda target: self.register(name, target)
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} needs a non-empty string name, got {name!r}.")
        if name in self._entries:
            raise ValueError(
                f"{self.kind.capitalize()} {name!r} is already registered (by {_qualname(self._entries[name])})."
            )
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise ValueError(
                f"{self.kind.capitalize()} {name!r}: {obj!r} is not a {self.base.__name__} subclass."
            )
        self._entries[name] = obj
        if self._on_register is not None:
            self._on_register(name, obj)
        return obj

    def get(self, name: str, where: str | None = None) -> T:
        """The object registered as `name`; an unknown name raises listing the known ones.

        `where` names the config field that held `name`, so the error points at the user's typo.
        """
        if name not in self._entries:
            prefix = f"{where}: " if where else ""
            known = sorted(self._entries) or "none"
            raise ValueError(f"{prefix}unknown {self.kind} {name!r}; known: {known}.")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self):
        return self._entries.items()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


__all__ = ["Registry"]
