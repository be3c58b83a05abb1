"""Fixture plugin: an audience source ``inline:N`` that makes N people without a file."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from orchestrator.plugin import Recipient, hookimpl


class InlineSource:
    def __init__(self, count: int, domain: str) -> None:
        self.count = count
        self.domain = domain
        self.description = f"{count} inline people"

    def __iter__(self) -> Iterator[Recipient]:
        for i in range(self.count):
            yield Recipient(id=f"inline-{i}", row=i + 1, email=f"person{i}@{self.domain}")


def open_inline(target: str, options: Mapping[str, Any]) -> InlineSource:
    return InlineSource(int(target), str(options.get("domain", "example.org")))


@hookimpl
def register_audience_sources(register: Callable[..., None]) -> None:
    register("inline", open_inline)
