"""The synthetic audience generator: reproducible, realistic, and readable by the sources."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.audience import open_audience
from orchestrator.contacts import INVALID_EMAIL, INVALID_PHONE
from orchestrator.errors import AudienceError
from orchestrator.pluginhost import PluginHost
from orchestrator.synthetic import generate_audience

LOCALE_REGIONS = {
    "en-US": "US",
    "en-GB": "GB",
    "ja-JP": "JP",
    "de-DE": "DE",
    "fr-FR": "FR",
    "es-ES": "ES",
    "ar-AE": "AE",
}


@pytest.mark.parametrize("name", ["a.csv", "a.jsonl", "a.csv.gz"])
def test_same_seed_same_bytes(tmp_path: Path, name: str) -> None:
    first, second, other = tmp_path / "1" / name, tmp_path / "2" / name, tmp_path / "3" / name
    for path in (first, second, other):
        path.parent.mkdir()
    generate_audience(first, 2_000, seed=5)
    generate_audience(second, 2_000, seed=5)
    generate_audience(other, 2_000, seed=6)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


@pytest.mark.parametrize("name", ["people.csv", "people.jsonl"])
def test_rows_parse_back_with_the_reported_split(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    stats = generate_audience(path, 5_000, seed=1, invalid_rate=0.05)
    people = list(open_audience(str(path), {}, PluginHost(entrypoints=False).source_factory))

    assert len(people) == stats.rows == 5_000
    assert len({p.id for p in people}) == 5_000
    assert sum(p.phone is not None for p in people) == stats.with_phone
    assert sum(p.email is not None for p in people) == stats.with_email
    assert sum(p.push_token is not None for p in people) == stats.with_push
    assert sum(p.invalid.get("phone") == INVALID_PHONE for p in people) == stats.invalid_phone
    assert sum(p.invalid.get("email") == INVALID_EMAIL for p in people) == stats.invalid_email
    assert not any("malformed" in reason for p in people for reason in p.invalid.values())
    unreachable = sum(not (p.phone or p.email or p.push_token) for p in people)
    assert unreachable == stats.no_contact
    # the requested share, within binomial noise (sd ~0.3 % at 5,000 rows)
    assert 0.04 < stats.invalid / stats.rows < 0.06
    assert stats.invalid_phone > 0 and stats.invalid_email > 0

    breached = [p.attrs["credentials_breached"] for p in people]
    assert all(isinstance(b, bool) for b in breached)
    assert sum(breached) == stats.credentials_breached
    assert 0.27 < sum(breached) / len(people) < 0.33
    assert {p.attrs["customer_tier"] for p in people} == {"free", "plus", "business"}

    locales = Counter(p.locale for p in people)
    assert set(locales) == set(LOCALE_REGIONS)
    assert locales == stats.locales
    assert locales.most_common(1)[0][0] == "en-US"
    assert all(p.region == LOCALE_REGIONS[p.locale or ""] for p in people)
    for p in people:
        if p.locale == "ja-JP" and p.phone:
            assert p.phone.startswith("+81")
    ja_names = [p.name for p in people if p.locale == "ja-JP" and p.name]
    ar_names = [p.name for p in people if p.locale == "ar-AE" and p.name]
    assert ja_names and all(not n.isascii() for n in ja_names)
    assert ar_names and all(any("\u0600" <= c <= "\u06ff" for c in n) for n in ar_names)
    assert all(
        p.email.endswith(("example.com", "example.net", "example.org")) for p in people if p.email
    )


def test_invalid_rate_extremes(tmp_path: Path) -> None:
    host = PluginHost(entrypoints=False)
    clean = generate_audience(tmp_path / "clean.csv", 1_000, invalid_rate=0.0)
    assert clean.invalid == 0
    assert all(
        not p.invalid for p in open_audience(str(tmp_path / "clean.csv"), {}, host.source_factory)
    )
    dirty = generate_audience(tmp_path / "dirty.jsonl", 1_000, invalid_rate=1.0)
    assert dirty.invalid == 1_000
    people = open_audience(str(tmp_path / "dirty.jsonl"), {}, host.source_factory)
    assert all(len(p.invalid) == 1 for p in people)


def test_format_by_extension_or_argument(tmp_path: Path) -> None:
    stats = generate_audience(tmp_path / "out.txt", 3, fmt="jsonl")
    assert stats.fmt == "jsonl"
    assert (tmp_path / "out.txt").read_text("utf-8").startswith('{"id": "cust-00000001"')
    assert generate_audience(tmp_path / "people.ndjson", 0).fmt == "jsonl"
    assert (tmp_path / "people.ndjson").read_text("utf-8") == ""
    with pytest.raises(AudienceError, match=r"cannot tell the format of out\.txt"):
        generate_audience(tmp_path / "out.txt", 3)
    with pytest.raises(AudienceError, match="invalid_rate"):
        generate_audience(tmp_path / "x.csv", 3, invalid_rate=1.5)
    with pytest.raises(AudienceError, match="cannot write"):
        generate_audience(tmp_path / "missing-dir" / "x.csv", 3)


def test_stats_as_dict(tmp_path: Path) -> None:
    stats = generate_audience(tmp_path / "p.csv", 200, seed=2)
    data = stats.as_dict()
    assert data["rows"] == 200
    assert data["invalid"] == stats.invalid_phone + stats.invalid_email
    assert data["path"] == str(tmp_path / "p.csv")
    assert sum(data["locales"].values()) == 200


def test_generation_memory_is_flat(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        generate_audience(tmp_path / "big.jsonl", 30_000, seed=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import orchestrator.synthetic"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []
