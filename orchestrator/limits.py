"""Limits on what enters from outside: files, YAML documents, lines and values.

Everything a person or another system hands the orchestrator (a playbook, a regimes file, a
server config, a test-recipients file, an audience file, a fact) is read through these helpers,
so a file that never ends, a YAML alias bomb or a value nested fifty thousand levels deep is one
clear error within seconds and a few megabytes, not an exhausted machine.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .errors import BreachError

#: playbooks, regimes tables, server configs, test-recipient lists
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
#: values a YAML document may expand to (aliases are counted each time they are used)
MAX_YAML_NODES = 200_000
#: nesting of YAML, JSON and fact values
MAX_DEPTH = 64
#: one line of an audience file (a CSV record, a JSON Lines object)
MAX_LINE_CHARS = 1024 * 1024
#: columns of an audience file's header
MAX_COLUMNS = 2_000
#: a recipient's id, as the ledger keeps it (a longer one makes its row malformed)
MAX_RECIPIENT_ID = 200
#: a normalised address (e-mail, phone number, device token), as the ledger keeps it
MAX_CONTACT_CHARS = 320
#: who did something (an approver, the source of an alert), as the ledger keeps it
MAX_ACTOR_CHARS = 200
#: a provider's error or a delivery's reason, as the ledger keeps it (a provider that answers
#: with a whole HTML page must not store a megabyte per delivery)
MAX_ERROR_CHARS = 2_000
#: a provider's message id, as the ledger keeps it (a longer one is kept shortened, see
#: :func:`provider_id_kept`)
MAX_PROVIDER_ID = 200


class InputRejected(BreachError):
    """Input over a limit, or not text at all; the message says which and what to do."""


def read_document(path: Path, what: str, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """A regular file's UTF-8 text, refused when larger than ``max_bytes``.

    Devices and pipes (``/dev/zero``) are refused before a byte is read; the size is checked
    while reading as well, for files that grow.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputRejected(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InputRejected(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise InputRejected(f"{what} {path} is {kind}")
    too_big = InputRejected(
        f"{what} {path} is larger than {max_bytes // 1024:,} KiB, the most this reads; "
        "is it the right file?"
    )
    if info.st_size > max_bytes:
        raise too_big
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InputRejected(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise too_big
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRejected(
            f"{what} {path} is not UTF-8 text (byte {exc.start}: {data[exc.start]:#04x})"
        ) from None


def bounded_lines(file: TextIO, where: str, *, max_chars: int = MAX_LINE_CHARS) -> Iterator[str]:
    """The lines of ``file``, refusing one longer than ``max_chars`` (an endless or binary file
    would otherwise be read whole into memory looking for its end)."""
    number = 0
    while True:
        line = file.readline(max_chars + 1)
        if not line:
            return
        number += 1
        if len(line) > max_chars:
            raise InputRejected(
                f"{where}: line {number} is longer than {max_chars:,} characters; is it the "
                "right file?"
            )
        yield line


def check_value(value: Any, what: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a value nested deeper than ``max_depth``, or holding text that is not valid
    Unicode (a lone surrogate from a ``\\ud800`` JSON escape cannot be written to any file)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise InputRejected(f"{what} is nested more than {max_depth} levels deep")
        if isinstance(item, str):
            _check_text(item, what)
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str):
                    _check_text(key, what)
                stack.append((inner, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((inner, depth + 1) for inner in item)


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputRejected(
            f"{what} holds text that is not valid Unicode (character {exc.start}: a lone "
            f"surrogate {text[exc.start]!r})"
        ) from None


def shortened(text: str, most: int) -> str:
    """``text`` when it has at most ``most`` characters, else its start and "…" in ``most``."""
    return text if len(text) <= most else text[: most - 1] + "…"


def provider_id_kept(value: object) -> str:
    """A provider's message id as the ledger keeps it, and looks it up: unchanged when it fits,
    else its first characters and a SHA-256 of the whole, which is as unique as the id and
    within :data:`MAX_PROVIDER_ID`. Receipts name messages by this id, so the send and every
    receipt about it must map it the same way; a send must never fail to settle because of
    what its provider answered (the message would go out again once its lease ran out)."""
    text = text_kept(value if isinstance(value, str) else str(value))
    if len(text) <= MAX_PROVIDER_ID:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{text[: MAX_PROVIDER_ID - len(digest) - 1]}~{digest}"


def text_kept(value: str) -> str:
    """``value`` as any ledger can keep it: NUL characters (which PostgreSQL's text refuses)
    and lone surrogates (which no encoder writes) replaced. A provider's error that holds one
    must not stop the settlement that records it."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if value.isascii():  # a flag of the string, not a scan
        return value
    return value.encode("utf-8", "replace").decode("utf-8")
