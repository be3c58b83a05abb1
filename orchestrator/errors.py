"""Error types a commander can act on.

Every error the orchestrator raises on purpose derives from :class:`BreachError`; the CLI and the
HTTP server print its message (never a traceback) and map it to an exit code or status.
"""

from __future__ import annotations

from dataclasses import dataclass


class BreachError(Exception):
    """Base of every expected failure; its message says what to do next."""

    exit_code = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem in a file: ``FILE:LINE:COLUMN: message``.

    ``line`` and ``column`` are 1-based; 0 means "the whole file".
    """

    file: str
    line: int
    column: int
    message: str
    #: "warning": worth fixing, but the playbook still runs (``breach validate --strict``
    #: refuses it too)
    severity: str = "error"

    def __str__(self) -> str:
        tag = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.column}: {tag}{self.message}"


class ValidationFailed(BreachError):
    """A playbook (or config) has one or more problems; all of them are attached."""

    exit_code = 1

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PluginError(BreachError):
    """A plugin failed to load, misspelled a hook, or registered something invalid."""


class AudienceError(BreachError):
    """An audience source cannot be opened or read."""


class FactError(BreachError):
    """An incident fact is missing, unknown or of the wrong type."""


class LedgerError(BreachError):
    """The ledger cannot be reached, or an incident/step it was asked about does not exist."""


class LedgerUnavailable(LedgerError):
    """The ledger's database cannot be used at all (away, locked, read-only, full): every write
    fails until the operator fixes it; nothing was written."""


class NotFound(LedgerError):
    """An incident or step id does not exist in the ledger."""


class LeaseLost(LedgerError):
    """Another worker took over what this one held (it was taken for dead): stop that work."""


class ConfigurationError(BreachError):
    """A notifier or server setting is missing or invalid (names the setting, never its value)."""


class Forbidden(BreachError):
    """The caller lacks the role an action needs (an approval gate's role, ``commander``)."""


class StateConflict(BreachError):
    """The action does not fit where the incident or step stands (nothing to approve...)."""
