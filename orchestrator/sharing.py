"""One message per address per step: people who share a phone, an inbox or a device.

A family sharing one phone number is several people in the audience but one handset: without
this, a step texts that handset once per person. By default (``dedupe: address`` on the step) a
step sends one message per normalised address; every other person with that address is recorded
``skipped`` with the reason ``same address as <recipient id>``, naming the person whose message
the address gets. ``dedupe: none`` sends to every person.

What counts as the same address (:func:`canonical`):

- phone numbers: their E.164 form, as ``orchestrator.contacts`` normalised them on the way in
  (``+81 90-1234-5678`` and ``09012345678`` read in ``JP`` are one number);
- e-mail addresses: the form ``orchestrator.contacts`` keeps (the domain normalised), with an
  ASCII local part case-folded too (``Ana@Example.org`` is ``ana@example.org``): mail systems
  treat the local part without regard to case in practice. A non-ASCII local part is kept as
  it is (Unicode case folding would merge ``ß`` with ``ss``); plus-tags and dots are never
  stripped, since only some providers ignore them;
- push tokens: as they are (one token is one app install).

The address that counts is the person's own, before ``--redirect-to`` replaces it: staging then
sends what production would. A person moved to a fallback channel is deduped on that channel's
address, in the same step. Rows that send nothing (skipped, vetoed) hold no address.

Which person keeps the message: the first in audience order. That choice holds across a fan-out
that is interrupted and resumed, without holding the audience's addresses in memory: each
batch's sending rows carry a 128-bit hash of (incident, step, contact kind, canonical address)
in the ledger column ``address_key``, under a unique index on that column alone; before a batch
is recorded, its addresses are looked up among the step's earlier rows (one indexed read per
batch) and within the batch itself. Memory stays bounded by the batch size, whatever the
audience size, and the database refuses a second holder even if a bug let one through.

The key is 16 raw bytes with the step inside it, not the (incident, step, hex text) the index
held before migration 0010: a hash lands on a random page of its index, so each row of a fan-out
paid for a random B-tree insert, and a narrower entry puts three times as many on a page (on
SQLite the index cost 8.7 µs a row at 200,000 rows of a step, now 4.9).

A sharer follows its holder: when the holder's delivery needs the step's fallback (it failed,
bounced, or got no receipt), the sharers get the fallback too, each on their own address on the
fallback channel (``shares_with`` names the holder in the ledger).

Personal notices (templates that read ``recipient``) are deduped too, by choice: the harm of
six copies on one handset (cost, a notice that looks like spam or phishing, people who stop
reading) is certain, while the sharers are in the same household or team as the person
addressed. The sharers are not silently merged: each is its own skipped row naming the holder,
counted per step in ``breach status`` and the dry-run summary. A playbook whose notice must
reach every person by name (a notice that states each person's own data) sets
``dedupe: none`` on the step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, Literal

Dedupe = Literal["address", "none"]

#: the reason of a skipped sharer starts with this, and names the holder's recipient id
SAME_ADDRESS_PREFIX = "same address as "
#: the sharers of a step, counted together (status and summary group the reasons under it)
SAME_ADDRESS = "same address as another recipient"
#: hex digits of an address's hash (128 bits: no collision in any audience)
KEY_LENGTH = 32
#: bytes of the step-scoped key the ledger keeps (128 bits: no collision in any ledger)
STEP_KEY_BYTES = 16


def canonical(contact: str, address: str) -> str:
    """The form of ``address`` (already normalised by ``orchestrator.contacts``) under which
    two people reach the same phone, inbox or device."""
    if contact == "email":
        local, at, domain = address.rpartition("@")
        if at:
            return f"{local.lower() if local.isascii() else local}@{domain.lower()}"
    return address


def address_hash(contact: str, address: str) -> str:
    """The address's identity, whatever step sends to it: the hash of (kind, canonical form)."""
    blob = f"{contact}\0{canonical(contact, address)}".encode()
    return hashlib.sha256(blob).hexdigest()[:KEY_LENGTH]


def address_key(incident_id: str, step_id: str, contact: str, address: str) -> bytes:
    """The key a delivery row of a step keeps instead of a second copy of the address.

    It hashes :func:`address_hash` once more with the step: the hex hash is what ledgers before
    migration 0010 kept, and the migration turns those into the same keys, so a step fanned out
    across an upgrade still sends once per address.
    """
    scoped = f"{incident_id}\0{step_id}\0{address_hash(contact, address)}".encode()
    return hashlib.sha256(scoped).digest()[:STEP_KEY_BYTES]


def same_address_reason(holder: str) -> str:
    """The reason a sharer is skipped: the holder's recipient id (never an address)."""
    return SAME_ADDRESS_PREFIX + holder


def grouped(reason: str) -> str:
    """``reason``, with every "same address as <id>" counted as one :data:`SAME_ADDRESS`."""
    return SAME_ADDRESS if reason.startswith(SAME_ADDRESS_PREFIX) else reason


def share(
    rows: Sequence[MutableMapping[str, Any]],
    keys: Sequence[bytes | None],
    holders: Callable[[Sequence[bytes]], Mapping[bytes, str]],
    skipped: str,
) -> dict[int, str]:
    """Give each address of one batch to its first person; returns position -> holder id of
    the rows turned into skipped sharers (the caller fixes its counts and drops their output).

    ``keys[i]`` is row ``i``'s :func:`address_key` (None: the row sends nothing or the step
    does not dedupe); ``holders(keys)`` answers which of those keys earlier batches of the step
    recorded, and for whom. A holder's row is marked with its key; a sharer becomes
    ``skipped`` (state ``skipped``) with :func:`same_address_reason`. A row whose holder has
    its own recipient id (the audience lists the person twice) is left to the ledger's
    duplicate-id rule, and holds no key.
    """
    wanted = sorted({k for k in keys if k is not None})
    if not wanted:
        return {}
    owner: dict[bytes, str] = dict(holders(wanted))
    sharers: dict[int, str] = {}
    for position, (row, key) in enumerate(zip(rows, keys, strict=True)):
        if key is None:
            continue
        holder = owner.get(key)
        if holder is None:
            owner[key] = str(row["recipient_id"])
            row["address_key"] = key
        elif holder == row["recipient_id"]:
            continue  # the same id again: the ledger records it as a duplicate recipient id
        else:
            row.update(state=skipped, reason=same_address_reason(holder), contact=None,
                       content_hash=None, next_attempt_at=None, recipient_data=None,
                       address_key=None, shares_with=holder)  # fmt: skip
            sharers[position] = holder
    return sharers
