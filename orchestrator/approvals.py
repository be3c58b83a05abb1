"""Approval gates: who may open or close one, and when it is open.

A playbook step's ``approval`` names the roles that may approve it and how many distinct roles
must (:class:`~orchestrator.playbook.Approval`). Each approval is a ``step.approved`` event on
the timeline with the role it counts for; the gate opens (the step's ``approved_by`` is written)
once ``quorum`` distinct roles approved. A rejection by one of the roles cancels the step. An
attempt without the role is refused and recorded as ``step.approval_refused``.

Two kinds of caller: the commander API passes the token's ``roles``, which are checked; the
command line passes none (whoever runs it holds the ledger's credentials) and says which role it
acts in, unless the gate has a single role, and is refused when the playbook sets ``cli: false``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .errors import BreachError, Forbidden
from .ledger import AuditEvent
from .playbook import Approval

__all__ = ["Decision", "approved_roles", "decide"]


@dataclass(frozen=True)
class Decision:
    """The role an approval (or rejection) counts for."""

    role: str


def approved_roles(events: Sequence[AuditEvent], step_id: str) -> dict[str, str]:
    """Role -> who approved in it, for one step, from its timeline."""
    out: dict[str, str] = {}
    for e in events:
        if e.step_id == step_id and e.kind == "step.approved" and e.detail.get("role"):
            out.setdefault(str(e.detail["role"]), e.actor)
    return out


def decide(
    gate: Approval,
    step_id: str,
    *,
    roles: Collection[str] | None,
    as_role: str | None,
    done: Collection[str] = (),
    verb: str = "approve",
) -> Decision:
    """The role this caller acts in, or :class:`Forbidden` / :class:`BreachError` saying why not.

    ``roles`` is what an API token holds (None: the command line); ``done`` are the roles that
    already approved (an approval picks one still missing).
    """
    needed = gate.required_roles
    if roles is None:
        if not gate.cli:
            raise Forbidden(f"step {step_id!r} can only be {verb}d through the commander API "
                            "(the playbook sets approval.cli: false)")  # fmt: skip
        if as_role is None:
            if len(needed) > 1:
                raise BreachError(f"say which role you {verb} step {step_id!r} as: --as "
                                  + " or --as ".join(needed))  # fmt: skip
            as_role = needed[0]
        if as_role not in needed:
            raise Forbidden(f"step {step_id!r} is {verb}d by {gate.label}, not {as_role}")
        return Decision(as_role)
    held = [r for r in needed if r in roles]
    if not held:
        raise Forbidden(f"step {step_id!r} is {verb}d by {gate.label}; this token's roles are "
                        f"{', '.join(sorted(roles)) or 'none'}")  # fmt: skip
    if as_role is not None:
        if as_role not in held:
            raise Forbidden(f"this token does not hold the role {as_role!r}")
        return Decision(as_role)
    missing = [r for r in held if r not in done]
    return Decision(missing[0] if missing else held[0])
