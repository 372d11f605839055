"""What is searched: one module per backbone, each defining a `SPACE`, and this registry."""
from __future__ import annotations

from spaces.base import Space
from trainables.errors import UsageError


def _registry() -> dict[str, Space]:
    from spaces import gte, minilm, modernbert
    return {module.SPACE.name: module.SPACE for module in (minilm, gte, modernbert)}


def names() -> list[str]:
    return sorted(_registry())


def get_space(name: str) -> Space:
    spaces = _registry()
    if name not in spaces:
        raise UsageError(f"unknown space {name!r}; valid spaces: {', '.join(sorted(spaces))}")
    return spaces[name]
