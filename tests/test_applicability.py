"""Which regimes apply to an incident, and why: thresholds are data, read on the audience counts
per region; the dry-run summary and `breach status` list the decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from engine_support import NOTIFIERS

from orchestrator.applicability import count_regions, decide
from orchestrator.regimes import builtin_regimes
from orchestrator.session import Breach


def regions(**people: int) -> dict[str, Any]:
    table = {key.replace("_", "-"): n for key, n in people.items()}
    return {"total": sum(n for k, n in table.items() if "-" in k), "regions": table}


@pytest.mark.parametrize(
    ("regime_id", "facts", "counts", "applies"),
    [
        ("us-ca-ag", {}, regions(US_CA=500), False),
        ("us-ca-ag", {}, regions(US_CA=501), True),
        ("us-ca-1798-82", {}, regions(US_CA=1), True),
        ("us-ca-1798-82", {}, regions(US_NY=40), False),  # counted: nobody in California
        ("us-tx-ag", {}, regions(US_TX=249), False),
        ("us-tx-ag", {}, regions(US_TX=250), True),
        ("us-ny-gbl-899aa", {}, regions(US_NY=3), True),
        ("us-hipaa-media", {}, regions(US_CA=400, US_NY=400), False),  # 800, but no state > 500
        ("us-hipaa-media", {}, regions(US_CA=400, US_NY=501), True),
        ("us-hipaa-hhs", {}, regions(US_CA=499), False),
        ("us-hipaa-hhs", {}, regions(US_CA=500), True),
        ("sg-pdpa", {}, {"total": 499, "regions": {}}, False),
        ("sg-pdpa", {}, {"total": 500, "regions": {}}, True),
        ("sg-pdpa", {"significant_harm": True}, {"total": 3, "regions": {}}, True),
        ("jp-appi-final", {}, None, True),
        ("jp-appi-final", {"malicious_act": True}, None, False),
        ("jp-appi-final-malicious", {"malicious_act": True}, None, True),
        ("cn-major-incident-cii", {"critical_infrastructure": True}, None, True),
        ("gdpr-art33", {}, None, True),
        # A threshold on counts that are not known yet is unknown, not "does not apply".
        ("us-ca-ag", {}, None, None),
        ("us-hipaa-media", {}, None, None),
        ("sg-pdpa", {}, None, None),
    ],
)
def test_thresholds(
    regime_id: str, facts: dict[str, Any], counts: dict[str, Any] | None, applies: bool | None
) -> None:
    decision = decide(regime_id, builtin_regimes()[regime_id], facts, counts)
    assert decision.applies is applies, decision.why


def test_the_reason_names_the_values_read() -> None:
    table = builtin_regimes()
    decision = decide("us-ca-ag", table["us-ca-ag"], {}, regions(US_CA=812))
    assert decision.why == "`counts.regions['US-CA'] > 500` is true (counts.regions['US-CA'] = 812)"
    media = decide("us-hipaa-media", table["us-hipaa-media"], {},
                   regions(US_CA=600, US_NY=501, US_TX=20))  # fmt: skip
    assert media.why.endswith("US-CA: 600, US-NY: 501")
    unknown = decide("us-tx-ag", table["us-tx-ag"], {}, None)
    assert "not known until the audience is counted" in unknown.why


def test_regions_count_towards_their_country() -> None:
    total, counted = count_regions(["US-CA", "us-ca ", "US-NY", "DE", None, ""])
    assert total == 6
    assert counted == {"DE": 1, "US": 3, "US-CA": 2, "US-NY": 1}


PLAYBOOK = """\
id: us-retailer
title: Retailer card data
version: 1
severity: high
jurisdictions: [us-ca, us-tx]
organisation:
  name: Example Retail
  contact_email: privacy@example.org
notice:
  en:
    what_happened: A misconfigured server made our customer records readable from the internet.
    impact: Your card number was exposed.
    measures: We fixed the bug.
    advice: Watch your statements.
    contact: privacy@example.org
    sms: "Example Retail: your card number was exposed. privacy@example.org"
regulators:
  - id: tx-ag
    name: Texas Attorney General
    regime: us-tx-ag
steps:
  - id: sms-all
    channel: sms
    notifier: standin-sms
    at: +0m
  - id: ca-media
    channel: sms
    notifier: standin-sms
    at: +1h
    condition: "counts.regions['US-CA'] > 500"
"""


def audience(path: Path, **people: int) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id,name,phone,region\n")
        i = 0
        for region, n in people.items():
            for _ in range(n):
                handle.write(f"p{i:06d},Person {i},+1415555{100 + i % 100:04d},"
                             f"{region.replace('_', '-')}\n")  # fmt: skip
                i += 1
    return path


@pytest.fixture
def breach(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Breach:
    monkeypatch.setenv("STANDIN_URL", "http://127.0.0.1:9")
    (tmp_path / "retail.yaml").write_text(PLAYBOOK)
    return Breach(f"sqlite:///{tmp_path / 'ledger.db'}", plugins_dir=NOTIFIERS)


def test_dry_run_summary_and_status_list_the_regimes_that_apply(
    breach: Breach, tmp_path: Path
) -> None:
    people = audience(tmp_path / "people.csv", US_CA=501, US_TX=249, DE=3)
    with breach:
        result = breach.trigger(tmp_path / "retail.yaml", audience=str(people), mode="dry-run",
                                outbox=tmp_path / "out")  # fmt: skip
        decided = {r["regime"]: r for r in result.summary["regimes"]}
        assert decided["us-ca-1798-82"]["applies"] is True
        assert decided["us-ca-ag"]["applies"] is True
        assert decided["us-ca-ag"]["why"].startswith("jurisdiction us-ca; ")
        assert decided["us-tx-ag"]["applies"] is False
        assert decided["us-tx-ag"]["why"].startswith("regulator tx-ag; ")
        assert decided["us-tx-individuals"]["applies"] is True
        # The step condition read the same counts per region.
        fired = {s["step"]: s for s in result.summary["steps"]}
        assert fired["ca-media"]["condition_result"] is True
        assert fired["ca-media"]["counts_seen"]["regions"]["US-CA"] == 501
        status = breach.status(result.incident_id)
        assert {r["regime"]: r["applies"] for r in status["regimes"]} == {
            r: d["applies"] for r, d in decided.items()
        }
        counted = [e for e in breach.timeline(result.incident_id)
                   if e["kind"] == "audience.counted"]  # fmt: skip
        assert len(counted) == 1
        assert counted[0]["detail"] == {"total": 753,
                                        "regions": {"DE": 3, "US": 750, "US-CA": 501,
                                                    "US-TX": 249},
                                        "locales": {"": 753}}  # fmt: skip


def test_a_live_incident_shows_thresholds_unknown_until_counted(
    breach: Breach, tmp_path: Path
) -> None:
    people = audience(tmp_path / "people.csv", US_CA=2)
    with breach:
        result = breach.trigger(tmp_path / "retail.yaml", audience=str(people), mode="live",
                                aware_at=datetime(2026, 11, 30, 8, tzinfo=UTC))  # fmt: skip
        decided = {r["regime"]: r for r in breach.status(result.incident_id)["regimes"]}
        assert decided["us-ca-ag"]["applies"] is None
        assert "not known until the audience is counted" in decided["us-ca-ag"]["why"]


def test_status_json_from_the_command_line_lists_regimes(
    breach: Breach, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.commands import main

    people = audience(tmp_path / "people.csv", US_TX=250)
    with breach:
        incident = breach.trigger(tmp_path / "retail.yaml", audience=str(people),
                                  mode="dry-run", outbox=tmp_path / "out").incident_id  # fmt: skip
    capsys.readouterr()
    main(["--plugins-dir", str(NOTIFIERS), "status", incident, "--db", str(breach.db), "--json"])
    decided = {r["regime"]: r for r in json.loads(capsys.readouterr().out)["regimes"]}
    assert decided["us-tx-ag"]["applies"] is True


def test_a_step_to_people_after_an_individual_deadline_is_warned(
    breach: Breach, tmp_path: Path
) -> None:
    late = (
        PLAYBOOK
        + """\
  - id: late-letter
    channel: sms
    notifier: standin-sms
    at: +31d
"""
    )
    (tmp_path / "late.yaml").write_text(late)
    people = audience(tmp_path / "people.csv", US_CA=3)
    aware = datetime(2026, 11, 2, 17, tzinfo=UTC)  # 09:00 in Los Angeles
    with breach:
        result = breach.trigger(tmp_path / "late.yaml", audience=str(people), mode="dry-run",
                                aware_at=aware, outbox=tmp_path / "out")  # fmt: skip
        assert result.summary["warnings"] == [
            "step late-letter is due 2026-12-03T09:00:00-08:00, after the us-ca-1798-82 "
            "deadline (2026-12-02T23:59:59-08:00)"
        ]
        live = breach.trigger(tmp_path / "late.yaml", audience=str(people), mode="live",
                              aware_at=datetime(2026, 11, 30, 17, tzinfo=UTC))  # fmt: skip
        status = breach.status(live.incident_id)
        # Live, the audience is not counted yet: California may apply, so its clock shows.
        assert "us-ca-1798-82" in {c["regime"] for c in status["clocks"]}
        assert any(w.startswith("step late-letter is due") for w in status["warnings"])
