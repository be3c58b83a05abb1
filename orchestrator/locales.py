"""Locale codes as notices use them: the primary language and the direction of the script.

Notices carry BCP 47 tags (``en``, ``pt-BR``, ``zh-Hant``); tables of headings, voices and
language names are kept per primary language, and HTML needs ``dir`` for right-to-left scripts.
"""

from __future__ import annotations

from typing import Final

__all__ = ["RTL_LANGUAGES", "direction", "language"]

#: Languages written right to left (primary subtags).
RTL_LANGUAGES: Final = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "dv", "ckb", "sd", "ug"})


def language(locale: str) -> str:
    """The primary language subtag, lower-case: ``zh-Hans`` -> ``zh``, ``pt-BR`` -> ``pt``."""
    return locale.split("-")[0].lower()


def direction(locale: str) -> str:
    """``rtl`` or ``ltr``, for the HTML ``dir`` attribute of text in ``locale``."""
    return "rtl" if language(locale) in RTL_LANGUAGES else "ltr"
