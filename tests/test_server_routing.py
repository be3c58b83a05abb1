"""Routing rules: matchers, fact mapping with type conversion, audiences bound from facts, no
route, and alert text kept as data."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.server.harness import (
    ALERTMANAGER_ROUTE,
    BASE,
    GENERIC_ROUTE,
    PAYLOADS,
    PLAYBOOK,
    alert,
    alertmanager_payload,
    bearer,
    incidents,
    load,
    serving,
    signed_headers,
    write_config,
)

from orchestrator.errors import FactError
from orchestrator.server.config import DEFAULT_SEVERITIES
from orchestrator.server.routing import compile_matcher, lookup, mapped_facts
from orchestrator.session import Breach

ORDER = DEFAULT_SEVERITIES
VIEW = {
    "labels": {"alertname": "RansomwareDetected", "severity": "high", "env": "production"},
    "scope": {"records": 1200, "items": [{"id": "a"}]},
}


# -- matchers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "rule", "matches"),
    [
        ("labels.alertname", "RansomwareDetected", True),
        ("labels.alertname", "Ransomware", False),
        ("labels.env", ["prod", "production"], True),
        ("labels.env", ["staging"], False),
        ("labels.env", {"regex": "prod(uction)?"}, True),
        ("labels.env", {"regex": "prod"}, False),  # anchored: a prefix is not enough
        ("labels.severity", {"at_least": "high"}, True),
        ("labels.severity", {"at_least": "warning"}, True),
        ("labels.severity", {"at_least": "critical"}, False),
        ("scope.records", 1200, True),
        ("$.scope.records", {"equals": "1200"}, True),
        ("scope.items.0.id", "a", True),
        ("labels.team", "blue", False),  # absent never matches
        ("scope", "x", False),  # a table is not a single value
    ],
)
def test_matchers(path: str, rule: Any, matches: bool) -> None:
    assert (compile_matcher(path, rule, ORDER).failure(VIEW) is None) is matches


def test_matcher_failures_say_why() -> None:
    assert (
        compile_matcher("labels.severity", {"at_least": "critical"}, ORDER).failure(VIEW)
        == "labels.severity is 'high', below 'critical'"
    )
    unknown = {"labels": {"severity": "sev1"}}
    reason = compile_matcher("labels.severity", {"at_least": "high"}, ORDER).failure(unknown)
    assert reason is not None and "not a known severity" in reason
    assert compile_matcher("labels.team", "blue", ORDER).failure(VIEW) == "labels.team is absent"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"regex": "("}, "invalid regular expression"),
        ({"at_least": "sev1"}, "unknown severity 'sev1'"),
        ({"regex": "a", "equals": "b"}, "exactly one of"),
        ([], "one or more"),
    ],
)
def test_bad_matchers_are_refused(rule: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_matcher("labels.x", rule, ORDER)


def test_lookup_reads_dotted_paths() -> None:
    assert lookup(VIEW, "$.scope.items.0.id") == "a"
    assert lookup(VIEW, "scope.items.3.id") is not None  # MISSING sentinel, not an error


# -- facts ----------------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Any:
    return load(write_config(tmp_path, ALERTMANAGER_ROUTE, GENERIC_ROUTE))


def test_facts_are_converted_to_the_playbook_types(config: Any) -> None:
    route = config.routes[0]
    view = {
        "labels": {"exfiltration": "yes"},
        "annotations": {"affected_count": "1,200", "systems": "file servers, portal"},
    }
    assert mapped_facts(route, view) == {
        "affected_count": 1200,
        "exfiltration_confirmed": True,
        "systems_affected": ["file servers", "portal"],
    }


def test_empty_labels_leave_the_playbook_default(config: Any) -> None:
    route = config.routes[0]
    assert mapped_facts(route, {"labels": {"exfiltration": ""}, "annotations": {}}) == {}


def test_a_fact_that_does_not_convert_names_fact_and_path(config: Any) -> None:
    with pytest.raises(FactError, match=r"'exfiltration_confirmed'.*labels\.exfiltration"):
        mapped_facts(config.routes[0], {"labels": {"exfiltration": "perhaps"}})


# -- over HTTP -----------------------------------------------------------------------------------


def post_alert(url: str, document: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/hooks/alertmanager", content=json.dumps(document), headers=bearer())


def test_alert_labels_and_annotations_become_typed_facts(config: Any, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with serving(config, db) as server:
        response = post_alert(server.url, alertmanager_payload())
    assert response.status_code == 201
    incident = Breach(db).status(response.json()["incident"])
    assert incident["mode"] == "dry-run"
    assert incident["facts"]["affected_count"] == 1200
    assert incident["facts"]["exfiltration_confirmed"] is True
    assert incident["facts"]["systems_affected"] == ["file servers", "patient portal"]
    assert incident["facts"]["report_phase"] == "initial"  # the playbook's default
    # awareness is when the alert started, not when the webhook arrived
    assert Breach(db).incidents()[0]["aware_at"].startswith("2026-11-25T09:14:03")
    outbox = Path(incident["outbox"])
    assert outbox.parent == tmp_path / "outbox"  # resolved against the config file
    assert (outbox / "summary.json").exists()


def test_no_route_is_202_and_creates_nothing(config: Any, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    document = alertmanager_payload(alerts=[alert("f1", severity="warning")])
    with serving(config, db) as server:
        response = post_alert(server.url, document)
        health = httpx.get(f"{server.url}/healthz").json()
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "no route"
    assert body["tried"] == ["ransomware: labels.severity is 'warning', below 'high'"]
    assert incidents(db) == []
    assert health["decisions"] == {"no-route": 1}


def test_any_alert_of_the_group_can_match_and_supplies_the_facts(
    config: Any, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    quiet = alert("f1", severity="info")
    loud = alert("f2", exfiltration="true")
    document = alertmanager_payload(alerts=[quiet, loud])
    with serving(config, db) as server:
        response = post_alert(server.url, document)
    assert response.status_code == 201
    facts = Breach(db).status(response.json()["incident"])["facts"]
    assert facts["exfiltration_confirmed"] is True
    received = [
        e for e in Breach(db).timeline(response.json()["incident"]) if e["kind"] == "alert.received"
    ]
    assert received[0]["detail"]["lead"] == "f2"
    assert received[0]["detail"]["fingerprints"] == ["f1", "f2"]


def test_first_route_in_config_order_wins(tmp_path: Path) -> None:
    narrow = ALERTMANAGER_ROUTE.replace('name = "ransomware"', 'name = "first"')
    broad = ALERTMANAGER_ROUTE.replace('name = "ransomware"', 'name = "second"')
    config = load(write_config(tmp_path, narrow, broad))
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with serving(config, db) as server:
        response = post_alert(server.url, alertmanager_payload())
    assert response.json()["route"] == "first"


def test_alert_text_is_data_never_a_template(config: Any, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    document = alertmanager_payload()
    document["alerts"][0]["annotations"]["systems"] = "{{ 7 * 7 }}, {% raw %}x"
    with serving(config, db) as server:
        response = post_alert(server.url, document)
    assert response.status_code == 201
    outbox = Path(Breach(db).status(response.json()["incident"])["outbox"])
    notices = (outbox / "notices.jsonl").read_text("utf-8")
    assert "{{ 7 * 7 }}" in notices
    assert "{% raw %}x" in notices


def test_generic_payload_fields_become_facts(config: Any, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    body = (PAYLOADS / "generic-dlp.json").read_bytes()
    with serving(config, db) as server:
        response = httpx.post(
            f"{server.url}/hooks/generic", content=body, headers=signed_headers(body)
        )
    assert response.status_code == 201, response.text
    facts = Breach(db).status(response.json()["incident"])["facts"]
    assert facts["systems_affected"] == ["file servers", "backup NAS"]
    assert facts["affected_count"] == 1200


# -- audiences bound from facts -------------------------------------------------------------------

SQL_ROUTES = f"""
[audiences.tenant]
source = "sql:sqlite:///people.db"
query = "SELECT id, email, locale FROM people WHERE tenant = :tenant"
bind = {{ tenant = "tenant" }}

[[routes]]
name = "per-tenant"
hook = "alertmanager"
playbook = "{PLAYBOOK}"
audience = "tenant"
mode = "dry-run"
[routes.match]
labels.alertname = "RansomwareDetected"
[routes.facts]
tenant = "labels.tenant"
exfiltration_confirmed = "labels.exfiltration"
"""


@pytest.fixture
def tenant_config(tmp_path: Path) -> Any:
    with sqlite3.connect(tmp_path / "people.db") as conn:
        conn.execute("CREATE TABLE people (id TEXT, email TEXT, locale TEXT, tenant TEXT)")
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, 'en', ?)",
            [(f"p{i}", f"p{i}@example.org", "acme" if i < 3 else "globex") for i in range(8)],
        )
    path = tmp_path / "breach.toml"
    path.write_text(BASE + SQL_ROUTES)  # "people.db" is relative to the config file
    return load(path)


@pytest.mark.parametrize(("tenant", "people"), [("acme", 3), ("globex", 5), ("acme' OR '1'='1", 0)])
def test_sql_audience_binds_a_fact_from_a_label(
    tenant_config: Any, tmp_path: Path, tenant: str, people: int
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    document = alertmanager_payload(alerts=[alert("f1", tenant=tenant, exfiltration="true")])
    with serving(tenant_config, db) as server:
        response = post_alert(server.url, document)
    assert response.status_code == 201, response.text
    incident = incidents(db)[0]
    assert incident["people"] == people  # the label was bound as a value, never pasted in


def test_sql_audience_without_its_fact_is_refused(tenant_config: Any, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with serving(tenant_config, db) as server:
        response = post_alert(server.url, alertmanager_payload(alerts=[alert("f1")]))
    assert response.status_code == 400
    assert "tenant" in response.json()["detail"]
    assert incidents(db) == []
