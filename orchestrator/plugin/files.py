"""Files that notifiers deliver: atomic writes, a lock for shared folders, receipts for writing.

Some notifiers deliver by writing files (a public notice page served by a web server, a
regulator filing a DPO picks up). Readers of those folders must see an old file or a new one,
never half of one; several workers may write into one folder; and a failed write must end as a
receipt the core can retry, or not, like any provider's answer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from ..errors import BreachError, ConfigurationError
from ..message import Message
from ..notifier import Notifier, Outcome, Receipt

__all__ = [
    "PERMANENT_ERRNOS",
    "atomic_write",
    "exclusive",
    "outcome_of",
    "setting_folder",
    "write_each",
]

#: Errors that writing again will not cure: the folder must be fixed (or changed) first.
PERMANENT_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    Returns False (and leaves the file, its mtime and any HTTP caches alone) when the file
    already holds exactly ``data``. ``mode`` is the new file's permission bits: private to the
    owner by default, as most of what a breach response writes is; published files pass
    ``0o644`` so a web server running as another user can serve them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return True


def _fsync_dir(folder: Path) -> None:
    # makes the rename itself durable; not possible (nor needed) on every platform
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (POSIX ``flock``) for a read-modify-write.

    Several workers may write into one folder; without the lock two of them could each read a
    shared file (a feed, an index), add their part and write, and one part would be lost.
    """
    try:
        import fcntl
    except ImportError:  # Windows: a single writer is assumed
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def setting_folder(notifier: Notifier, setting: str, purpose: str) -> Path:
    """The folder named by ``notifier``'s ``setting``.

    Raises :class:`~orchestrator.errors.ConfigurationError` when it is not set, saying what it
    is needed for, e.g. ``purpose="file the report"``.
    """
    folder = notifier.settings.get(setting)
    if not folder:
        raise ConfigurationError(f"notifier {notifier.name!r} needs {setting} to {purpose}")
    return Path(folder)


def outcome_of(exc: OSError) -> Outcome:
    """How a failed write ends: permanent for :data:`PERMANENT_ERRNOS`, transient otherwise."""
    return Outcome.PERMANENT if exc.errno in PERMANENT_ERRNOS else Outcome.TRANSIENT


async def write_each(
    batch: Sequence[Message], write: Callable[[Message], Awaitable[str]]
) -> list[Receipt]:
    """One receipt per message of ``batch``, in order, from ``write`` (the file it wrote).

    ``write`` returns the receipt's provider id. A :class:`ConfigurationError` stops the batch
    (nothing can be written until the settings are fixed); an ``OSError`` fails that message
    (see :func:`outcome_of`) and any other :class:`BreachError` fails it permanently.
    """
    receipts = []
    for message in batch:
        try:
            provider_id = await write(message)
            receipts.append(Receipt(message.delivery_id, Outcome.SENT, provider_id=provider_id))
        except ConfigurationError:
            raise
        except OSError as exc:
            receipts.append(Receipt(message.delivery_id, outcome_of(exc), error=str(exc)))
        except BreachError as exc:
            receipts.append(Receipt(message.delivery_id, Outcome.PERMANENT, error=str(exc)))
    return receipts
