"""Dedupe: one alert group, one incident. Repeats, new alerts, resolutions and re-firings are
recorded on its timeline; a resolution cancels nothing."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.server.harness import (
    ALERTMANAGER_ROUTE,
    GENERIC_ROUTE,
    PAYLOADS,
    LiveServer,
    alert,
    alertmanager_payload,
    bearer,
    incidents,
    kinds,
    load,
    signed_headers,
    write_config,
)

from orchestrator.session import Breach


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def server(tmp_path: Path, db: str) -> Any:
    with LiveServer(load(write_config(tmp_path, ALERTMANAGER_ROUTE, GENERIC_ROUTE)), db=db) as live:
        yield live


def notify(server: LiveServer, *alerts: dict[str, Any], group: str = "g1") -> httpx.Response:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    document = alertmanager_payload(
        alerts=list(alerts), groupKey=f"{{}}:{{group={group!r}}}", status=status
    )
    return httpx.post(
        f"{server.url}/hooks/alertmanager", content=json.dumps(document), headers=bearer()
    )


def alert_events(incident: str, db: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e["kind"], e["detail"])
        for e in Breach(db).timeline(incident)
        if e["kind"].startswith("alert.")
    ]


def test_repeated_notification_joins_the_open_incident(server: LiveServer, db: str) -> None:
    first = notify(server, alert("f1"))
    assert first.status_code == 201
    incident = first.json()["incident"]
    again = notify(server, alert("f1"))
    assert again.status_code == 200
    assert again.json()["status"] == "joined"
    assert again.json()["incident"] == incident
    assert len(incidents(db)) == 1
    assert alert_events(incident, db)[-1] == ("alert.repeated", {"fingerprints": ["f1"]})


def test_new_alert_in_the_group_adds_its_facts(server: LiveServer, db: str) -> None:
    incident = notify(server, alert("f1")).json()["incident"]
    assert Breach(db).status(incident)["facts"]["exfiltration_confirmed"] is False
    newer = alert("f2", exfiltration="true")
    newer["annotations"]["affected_count"] = "5000"
    response = notify(server, alert("f1"), newer)
    assert response.json()["alerts"]["new"] == ["f2"]
    events = alert_events(incident, db)
    assert (
        "alert.joined",
        {"fingerprint": "f2", "facts": ["affected_count", "exfiltration_confirmed"]},
    ) in events
    assert ("alert.repeated", {"fingerprints": ["f1"]}) in events
    facts = Breach(db).status(incident)["facts"]
    assert facts["affected_count"] == 5000
    assert facts["exfiltration_confirmed"] is True
    assert len(incidents(db)) == 1


def test_a_joining_alert_with_a_bad_value_is_recorded_without_its_facts(
    server: LiveServer, db: str
) -> None:
    incident = notify(server, alert("f1")).json()["incident"]
    odd = alert("f2")
    odd["annotations"]["affected_count"] = "about a thousand"
    response = notify(server, alert("f1"), odd)
    assert response.status_code == 200  # Alertmanager does not retry a 4xx: keep the group going
    assert "affected_count" in response.json()["facts_refused"]["f2"]
    kind, detail = alert_events(incident, db)[1]
    assert kind == "alert.joined"
    assert detail["fingerprint"] == "f2"
    assert "annotations.affected_count" in detail["facts_refused"]
    assert Breach(db).status(incident)["facts"]["affected_count"] == 1200
    notify(server, alert("f1", status="resolved"), odd)
    assert ("alert.resolved", {"fingerprint": "f1"}) in alert_events(incident, db)


def test_resolution_is_recorded_and_cancels_nothing(server: LiveServer, db: str) -> None:
    incident = notify(server, alert("f1")).json()["incident"]
    before = Breach(db).status(incident)
    response = notify(server, alert("f1", status="resolved"))
    assert response.status_code == 200
    assert response.json()["alerts"]["resolved"] == ["f1"]
    assert alert_events(incident, db)[-1] == ("alert.resolved", {"fingerprint": "f1"})
    after = Breach(db).status(incident)
    assert after["state"] == before["state"]
    assert [s["state"] for s in after["steps"]] == [s["state"] for s in before["steps"]]
    # Alertmanager may send the resolution again: it is recorded once
    notify(server, alert("f1", status="resolved"))
    assert [k for k, _ in alert_events(incident, db)].count("alert.resolved") == 1
    # and if the alert fires again, the same incident says so
    notify(server, alert("f1"))
    assert alert_events(incident, db)[-1] == ("alert.refired", {"fingerprint": "f1"})
    assert len(incidents(db)) == 1


def test_resolution_of_an_unknown_group_creates_nothing(server: LiveServer, db: str) -> None:
    response = notify(server, alert("f9", status="resolved"), group="never-seen")
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    assert incidents(db) == []


def test_another_group_opens_another_incident(server: LiveServer, db: str) -> None:
    one = notify(server, alert("f1"), group="g1").json()["incident"]
    two = notify(server, alert("f1"), group="g2").json()["incident"]
    assert one != two
    assert len(incidents(db)) == 2


def test_simultaneous_notifications_of_a_group_open_one_incident(
    server: LiveServer, db: str
) -> None:
    statuses: list[int] = []
    start = threading.Barrier(6)

    def send() -> None:
        start.wait()
        statuses.append(notify(server, alert("f1"), group="burst").status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] * 5 + [201]
    assert len(incidents(db)) == 1
    assert kinds(incidents(db)[0]["id"], db).count("alert.repeated") == 5


# -- generic ---------------------------------------------------------------------------------------


def send_generic(server: LiveServer, **changes: Any) -> httpx.Response:
    document = json.loads((PAYLOADS / "generic-dlp.json").read_text("utf-8"))
    # senders number their deliveries, so a re-sent event is other bytes, another signature
    document.update({"delivery": next(_DELIVERIES), **changes})
    body = json.dumps(document).encode()
    headers = signed_headers(body)
    return httpx.post(f"{server.url}/hooks/generic", content=body, headers=headers)


_DELIVERIES = itertools.count()


def test_generic_flow_create_repeat_update_resolve(server: LiveServer, db: str) -> None:
    created = send_generic(server)
    assert created.status_code == 201
    incident = created.json()["incident"]
    repeated = send_generic(server)
    assert repeated.json()["status"] == "joined"
    updated = send_generic(
        server,
        scope={"records": 4800, "exfiltrated": True, "systems": ["file servers", "backup NAS"]},
    )
    assert updated.json()["facts_changed"] == {"affected_count": 4800}
    # a resolution no longer matches severity rules, yet finds its incident by its reference
    resolved = send_generic(server, status="resolved", severity="info")
    assert resolved.status_code == 200
    assert [k for k, _ in alert_events(incident, db)] == [
        "alert.received",
        "alert.repeated",
        "alert.updated",
        "alert.resolved",
    ]
    assert alert_events(incident, db)[-1][1] == {"ref": "DLP-4471"}
    assert Breach(db).status(incident)["facts"]["affected_count"] == 4800
    assert len(incidents(db)) == 1
    other = send_generic(server, incident_ref="DLP-9000")
    assert other.status_code == 201
    assert len(incidents(db)) == 2


def test_generic_payload_without_its_dedupe_field_is_400(server: LiveServer, db: str) -> None:
    response = send_generic(server, incident_ref=None)
    assert response.status_code == 400
    assert "incident_ref" in response.json()["detail"]
    assert incidents(db) == []
