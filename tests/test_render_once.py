"""A notice is rendered and turned into its provider body once; each person adds only their part.

The content hash of a delivery comes from the digest of its notice's shared body and the
person's own part (address, name, delivery id), so it must still tell apart everything that
differs, and a template that reads ``recipient`` must still give each person their own text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from breach_sendgrid import SendGridEmail
from breach_twilio import TwilioSms
from factories import make_message, make_notice, make_recipient
from sqlalchemy import select

from orchestrator.campaign import Campaign
from orchestrator.fanout import content_hash, delivery_hash
from orchestrator.ledger import Delivery, Ledger
from orchestrator.message import Message
from orchestrator.notifier import Notifier
from orchestrator.session import Breach

SHARED = """\
id: render-once
title: Account data exposed
version: 1
severity: high
organisation: {{name: Example Org, contact_email: privacy@example.org}}
notice:
  en:
    subject: "Notice of data breach"
    what_happened: A backup of our account database was reachable from the internet.
    impact: Your e-mail address was exposed.
    measures: We closed the backup.
    advice: "Watch out for phishing{advice_tail}."
    contact: privacy@example.org
    sms: "Example Org: your e-mail address was exposed. {sms_tail}"
steps:
  - {{id: mail, channel: email, at: +0m}}
  - {{id: text, channel: sms, at: +0m}}
"""
PERSONAL = {"advice_tail": ", {{ recipient.name }}",
            "sms_tail": "{{ recipient.name }}, reset your password."}  # fmt: skip
IMPERSONAL = {"advice_tail": "", "sms_tail": "Reset your password."}


def _people(path: Path, names: list[str]) -> Path:
    lines = [
        f"p{i},{name},p{i}@example.com,+1415555{100 + i:04d}\n" for i, name in enumerate(names)
    ]
    path.write_text("id,name,email,phone\n" + "".join(lines))
    return path


def _trigger(tmp_path: Path, tag: str, texts: dict[str, str], names: list[str],
             mode: str) -> tuple[dict[tuple[str, str], str | None], Path]:  # fmt: skip
    """Content hash per (step, recipient), and the outbox folder."""
    playbook = tmp_path / f"{tag}.yaml"
    playbook.write_text(SHARED.format(**texts))
    outbox = tmp_path / f"out-{tag}"
    db = f"sqlite:///{tmp_path / (tag + '.db')}"
    with Breach(db) as breach:
        breach.trigger(playbook, audience=str(_people(tmp_path / f"{tag}.csv", names)),
                       mode=mode, outbox=outbox)  # type: ignore[arg-type]  # fmt: skip
    with Ledger(db).session() as s:
        rows = s.scalars(select(Delivery)).all()
        return {(d.step_id, d.recipient_id): d.content_hash for d in rows}, outbox


def _outbox(folder: Path, channel: str) -> dict[str, dict[str, Any]]:
    lines = (folder / f"{channel}.jsonl").read_text().splitlines()
    return {r["recipient"]: r["payload"] for r in map(json.loads, lines)}


def test_a_template_reading_recipient_still_gives_each_person_their_own_text(
    tmp_path: Path,
) -> None:
    hashes, outbox = _trigger(tmp_path, "personal", PERSONAL, ["Ana", "Bo", "Cy"], "dry-run")

    sms = _outbox(outbox, "sms")
    assert [sms[f"p{i}"]["form"]["Body"] for i in range(3)] == [
        f"Example Org: your e-mail address was exposed. {name}, reset your password."
        for name in ("Ana", "Bo", "Cy")
    ]
    mail = _outbox(outbox, "email")
    for i, name in enumerate(("Ana", "Bo", "Cy")):
        html = mail[f"p{i}"]["content"][1]["value"]
        assert f"Watch out for phishing, {name}." in html
        assert all(f", {other}." not in html for other in ("Ana", "Bo", "Cy") if other != name)
    assert len(set(hashes.values())) == 6 and None not in hashes.values()


def _hash(notifier: Notifier, message: Message) -> str:
    return delivery_hash(content_hash(notifier.shared_payload(message)),
                         notifier.personal_payload(message))  # fmt: skip


def test_each_stored_hash_is_the_hash_of_the_message_dispatch_sends(tmp_path: Path) -> None:
    for tag, texts in (("shared", IMPERSONAL), ("personal", PERSONAL)):
        playbook = tmp_path / f"{tag}.yaml"
        playbook.write_text(SHARED.format(**texts))
        people = _people(tmp_path / f"{tag}.csv", ["Ana", "Bo", "Cy"])
        with Breach(f"sqlite:///{tmp_path / (tag + '.db')}") as breach:
            incident = breach.trigger(playbook, audience=str(people), mode="dry-run",
                                      outbox=tmp_path / tag).incident_id  # fmt: skip
            campaign = Campaign(breach, breach.ledger.incident(incident))
            with breach.ledger.session() as s:
                rows = [{c.key: getattr(d, c.key) for c in Delivery.__table__.c}
                        for d in s.scalars(select(Delivery))]  # fmt: skip
            assert len(rows) == 6
            for row in rows:
                if tag == "shared" and row["channel"] == "email":
                    # the ledger keeps no name for a notice that reads none, so the e-mail
                    # dispatch sends has no display name in To; the planned one had it
                    continue
                notifier = breach.host.notifier(row["channel"], row["notifier"])
                assert row["content_hash"] == _hash(notifier, campaign.message_for(row))


def test_the_hash_follows_the_text_the_person_and_the_address() -> None:
    sms, email = TwilioSms({}), SendGridEmail({})
    ana = make_recipient(name="Ana")
    base = {"recipient": ana, "delivery_id": "d-1"}
    for notifier, channel, address in ((sms, "sms", "+14155550100"),
                                       (email, "email", "a@example.com")):  # fmt: skip
        m = make_message(channel, address=address, **base)  # type: ignore[arg-type]
        same = make_message(channel, address=address, **base)  # type: ignore[arg-type]
        other_text = make_message(channel, address=address, notice=make_notice("ja"),
                                  **base)  # type: ignore[arg-type]  # fmt: skip
        other_address = make_message(channel, address="+14155550101" if channel == "sms"
                                     else "b@example.com", **base)  # type: ignore[arg-type]  # fmt: skip
        assert _hash(notifier, m) == _hash(notifier, same)
        assert _hash(notifier, m) != _hash(notifier, other_text)
        assert _hash(notifier, m) != _hash(notifier, other_address)
        # the shared part holds nobody's address: it is hashed once for everyone
        assert address not in json.dumps(notifier.shared_payload(m))
    renamed = make_recipient(name="Bea")
    # an e-mail shows the name in its To header; an SMS (this text) does not
    mail = [make_message("email", address="a@example.com", recipient=r, delivery_id="d-1")
            for r in (ana, renamed)]  # fmt: skip
    text = [make_message("sms", address="+14155550100", recipient=r, delivery_id="d-1")
            for r in (ana, renamed)]  # fmt: skip
    assert _hash(email, mail[0]) != _hash(email, mail[1])
    assert _hash(sms, text[0]) == _hash(sms, text[1])
