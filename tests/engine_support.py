"""Helpers shared by the engine tests: audiences, triggering, reading the ledger back."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from orchestrator.ledger import Delivery, Ledger
from orchestrator.pluginhost import PluginHost
from orchestrator.session import Breach

ROOT = Path(__file__).parent.parent
NOTIFIERS = Path(__file__).parent / "notifiers"
PLAYBOOK = Path(__file__).parent / "fixtures" / "playbooks" / "engine-sms.yaml"


def phone_audience(path: Path, rows: int) -> Path:
    """``rows`` people, all reachable by SMS, each on a number of their own (+1 415 555-0100
    onwards: steps send one message per number, so shared numbers would be skipped)."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id,name,phone,region\n")
        for i in range(rows):
            handle.write(f"p{i:06d},Person {i},+1415{5550100 + i},US\n")
    return path


def standin_host(url: str) -> PluginHost:
    os.environ["STANDIN_URL"] = url
    return PluginHost(plugins_dir=NOTIFIERS)


def trigger_live(tmp_path: Path, audience: Path, host: PluginHost, db: str, **kw: Any) -> str:
    playbook = kw.pop("playbook", PLAYBOOK)
    breach = Breach(db, host=host)
    return breach.trigger(playbook, audience=str(audience), mode="live", **kw).incident_id


def deliveries(db: str, incident_id: str) -> list[Delivery]:
    with Ledger(db).session() as s:
        return list(s.scalars(select(Delivery).where(Delivery.incident_id == incident_id)))


def states(db: str, incident_id: str) -> Counter[str]:
    return Counter(d.state for d in deliveries(db, incident_id))
