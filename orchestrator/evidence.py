"""The evidence bundle of an incident (GDPR Art. 33(5) documentation): one zip file holding

- ``timeline.json``: the audit trail with each row's hashes, and ``chain.json``: the chain's
  verification and its head, with the settle batches checked against the deliveries;
- ``status.json``: steps, deliveries by state, deadlines, clocks and the regimes that apply;
- ``playbook.yaml``: the exact playbook text the incident ran (its SHA-256 in the manifest);
- ``notices/LOCALE.json``: the notice in each locale, as the public and regulators read it;
- ``reports/STEP.json``: each regulator filing, rebuilt from its ledger row, with its receipt;
- ``deliveries.csv``: the delivery ledger, contacts masked, with each message's content hash;
- ``manifest.json``: the SHA-256 and size of every other file, and the chain head.

The bundle is written to a temporary file beside ``path`` and moved into place when complete.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BreachError
from .logs import mask_recipient, mask_text

if TYPE_CHECKING:
    from .session import Breach

#: the columns of deliveries.csv
DELIVERY_COLUMNS = ("id", "step", "channel", "notifier", "recipient", "contact", "locale",
                    "state", "reason", "receipt_outcome", "attempts", "sent_at",
                    "provider_message_id", "content_hash", "via_fallback")  # fmt: skip


class EvidenceError(BreachError):
    """The evidence bundle cannot be written."""


def write_bundle(breach: Breach, incident_id: str, path: Path) -> dict[str, Any]:
    """Write ``incident_id``'s evidence bundle to ``path``; returns its manifest."""
    from .campaign import Campaign

    incident = breach.ledger.incident(incident_id)
    report = breach.ledger.verify_chain(incident_id)
    files: dict[str, bytes] = {}
    files["timeline.json"] = _json(breach.timeline(incident_id))
    files["chain.json"] = _json(report.as_dict())
    files["status.json"] = _json(breach.status(incident_id))
    files["playbook.yaml"] = incident.playbook_text.encode("utf-8")
    campaign = Campaign(breach, incident)
    for locale, notice in sorted(campaign.public_notices().items()):
        files[f"notices/{locale}.json"] = _json(dataclasses.asdict(notice))
    for row in _regulator_rows(breach, incident_id):
        message = campaign.message_for(row)
        notifier = breach.host.notifier(row["channel"], row["notifier"])
        payload = notifier.build_payload(message)
        receipt = {k: row[k] for k in ("state", "sent_at", "provider_message_id", "reason",
                                       "receipt_outcome")}  # fmt: skip
        files[f"reports/{row['step_id']}.json"] = _json(
            {"step": row["step_id"], "receipt": receipt, "filing": payload}
        )
    manifest_files = {name: _digest(data) for name, data in files.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name, data in files.items():
                bundle.writestr(name, data)
            # The delivery ledger is streamed in batches: an incident may hold millions of rows.
            digest, size = hashlib.sha256(), 0
            entry = zipfile.ZipInfo("deliveries.csv", time.localtime()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            with bundle.open(entry, "w") as raw:
                for chunk in _delivery_csv(breach, incident_id):
                    raw.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            manifest_files["deliveries.csv"] = {"sha256": digest.hexdigest(), "bytes": size}
            manifest = {
                "incident": incident_id, "playbook_sha256": incident.playbook_digest,
                "chain": {"head": report.head, "rows": report.rows, "intact": report.intact},
                "files": dict(sorted(manifest_files.items())),
            }  # fmt: skip
            bundle.writestr("manifest.json", _json(manifest))
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise EvidenceError(f"cannot write the evidence bundle {path}: {exc}") from None
    return manifest


def _regulator_rows(breach: Breach, incident_id: str) -> Iterator[dict[str, Any]]:
    for batch in breach.ledger.delivery_batches(incident_id, recipient_prefix="regulator:"):
        for d in batch:
            yield {c.name: getattr(d, c.name) for c in d.__table__.columns}


def _delivery_csv(breach: Breach, incident_id: str) -> Iterator[bytes]:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(DELIVERY_COLUMNS)
    for batch in breach.ledger.delivery_batches(incident_id):
        for d in batch:
            writer.writerow([
                d.id, d.step_id, d.channel, d.notifier or "", d.recipient_id,
                mask_recipient(d.contact) if d.contact else "", d.locale or "", d.state,
                mask_text(d.reason) if d.reason else "", d.receipt_outcome or "", d.attempts,
                d.sent_at.isoformat() if d.sent_at else "", d.provider_message_id or "",
                d.content_hash or "", int(d.via_fallback),
            ])  # fmt: skip
        yield text.getvalue().encode("utf-8")
        text.seek(0)
        text.truncate()
    if text.tell():
        yield text.getvalue().encode("utf-8")


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def check_bundle(path: Path) -> list[str]:
    """Every file of a bundle whose bytes do not match its manifest entry, or that the manifest
    lacks or names without the file (an empty list: the manifest matches)."""
    with zipfile.ZipFile(path) as bundle:
        manifest: Mapping[str, Any] = json.loads(bundle.read("manifest.json"))["files"]
        names = set(bundle.namelist()) - {"manifest.json"}
        problems = [f"{n}: not in the manifest" for n in sorted(names - set(manifest))]
        problems += [f"{n}: missing" for n in sorted(set(manifest) - names)]
        for name in sorted(names & set(manifest)):
            if hashlib.sha256(bundle.read(name)).hexdigest() != manifest[name]["sha256"]:
                problems.append(f"{name}: its SHA-256 differs from the manifest")
    return problems
