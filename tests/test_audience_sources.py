"""The core's audience sources (CSV, JSONL, SQL), the --audience spec, and streaming memory."""

from __future__ import annotations

import gzip
import json
import sqlite3
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.audience import (
    AudienceSource,
    Recipient,
    open_audience,
    parse_audience_spec,
)
from orchestrator.contacts import INVALID_EMAIL, INVALID_PHONE
from orchestrator.errors import AudienceError
from orchestrator.pluginhost import PluginHost
from orchestrator.sources.csvfile import open_csv
from orchestrator.sources.jsonl import open_jsonl
from orchestrator.sources.sql import open_sql
from orchestrator.synthetic import generate_audience

HEADER = "id,name,email,phone,push_token,locale,region,credentials_breached,tier"


def _write(path: Path, text: str, *, bom: bool = False, crlf: bool = False) -> Path:
    data = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


def _by_id(source: AudienceSource) -> dict[str, Recipient]:
    return {r.id: r for r in source}


# -- CSV -----------------------------------------------------------------------------------


def test_csv_with_bom_crlf_quoted_newlines_and_non_latin_names(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "people.csv",
        f"{HEADER}\n"
        'jp-1,山田 太郎,Taro@Example.JP,090-1234-5678,,ja_JP,jp,TRUE,"gold\nsince 2019"\n'
        "ae-1,محمد العلي,m@example.ae,+971501234567,,ar-AE,AE,false,free\n"
        "ru-1,Иван Петров,ivan@example.ru,+79123456789,,ru-RU,RU,False,\n"
        'us-1,"Smith, Jane",jane@example.com,(201) 555-0123,,en-US,US,,plus\n',
        bom=True,
        crlf=True,
    )
    people = list(open_csv(str(path), {}))
    assert [r.id for r in people] == ["jp-1", "ae-1", "ru-1", "us-1"]
    assert [r.row for r in people] == [1, 2, 3, 4]
    jp, ae, ru, us = people
    assert jp.name == "山田 太郎" and ae.name == "محمد العلي" and ru.name == "Иван Петров"
    assert jp.email == "Taro@example.jp"
    assert jp.phone == "+819012345678"
    assert (jp.locale, jp.region) == ("ja-JP", "JP")
    # the quoted newline stays inside its field, CR LF and all
    assert jp.attrs == {"credentials_breached": True, "tier": "gold\r\nsince 2019"}
    assert ae.phone == "+971501234567" and ae.attrs["credentials_breached"] is False
    assert ru.attrs == {"credentials_breached": False, "tier": ""}
    assert us.name == "Smith, Jane" and us.phone == "+12015550123"
    assert all(r.invalid == {} for r in people)


def test_csv_semicolon_delimiter_is_detected_and_columns_match_any_case(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "export.csv", "ID;Name;E-Mail-Opt-In;EMAIL\n7;Ann;yes;ann@example.com\n"
    )
    (ann,) = open_csv(str(path), {})
    assert (ann.id, ann.name, ann.email) == ("7", "Ann", "ann@example.com")
    assert ann.attrs == {"E-Mail-Opt-In": "yes"}


def test_csv_explicit_delimiter_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "legacy.csv"
    path.write_bytes("id|name|email\n1|Zoë Müller|zoe@example.de\n".encode("cp1252"))
    with pytest.raises(AudienceError, match=r"legacy\.csv.*not utf-8.*encoding="):
        list(open_csv(str(path), {"delimiter": "|"}))
    (zoe,) = open_csv(str(path), {"delimiter": "|", "encoding": "cp1252"})
    assert zoe.name == "Zoë Müller"


def test_csv_malformed_rows_are_kept_with_a_reason(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "people.csv",
        "id,name,email,phone,region\n"
        "a,Ann,ann@example.com,+12015550123,US\n"
        "b,Bob,bob@example.com\n"  # too few fields
        "\n"  # blank line: not a row
        ",Nobody,nobody@example.com,,US\n"  # no id
        "c,Cy,cy@example.com,,US,extra\n"  # too many
        ",,,,\n"  # an empty spreadsheet row: not a row
        "d,Di,di@example.com,,US\n",
    )
    people = list(open_csv(str(path), {}))
    assert [(r.id, r.row) for r in people] == [("a", 1), ("b", 2), ("row-3", 3), ("c", 4), ("d", 5)]
    b, nobody, c = people[1:4]
    assert b.invalid["phone"] == "malformed row: 3 fields, header has 5 (line 3)"
    assert nobody.invalid["email"] == "malformed row: missing id (line 5)"
    assert c.invalid["push_token"] == "malformed row: 6 fields, header has 5 (line 6)"
    for broken in (b, nobody, c):
        assert set(broken.invalid) == {"phone", "email", "push_token"}
        assert broken.email is None and broken.name is None
        assert broken.address("email")[0] is None
    assert people[4].email == "di@example.com"


def test_csv_invalid_contacts_reported_by_reason_not_value(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "people.csv",
        "id,email,phone,region\n1,jane.doe.example.com,555-0199,\n2,ok@example.com,12,US\n",
    )
    first, second = open_csv(str(path), {})
    assert first.invalid == {"email": INVALID_EMAIL, "phone": INVALID_PHONE}
    assert second.invalid == {"phone": INVALID_PHONE}
    assert second.email == "ok@example.com"
    reasons = " ".join(first.invalid.values()) + " ".join(second.invalid.values())
    assert "jane" not in reasons and "555" not in reasons and "12" not in reasons


def test_csv_is_re_read_on_every_iteration(tmp_path: Path) -> None:
    path = _write(tmp_path / "people.csv", "id,email\n1,a@example.com\n2,b@example.com\n")
    source = open_csv(str(path), {})
    first = list(source)
    assert list(source) == first
    # a fresh read each time, not a cached copy
    _write(path, "id,email\n1,a@example.com\n2,b@example.com\n3,c@example.com\n")
    assert [r.id for r in source] == ["1", "2", "3"]


def test_gzipped_csv(tmp_path: Path) -> None:
    path = tmp_path / "people.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as out:
        out.write("\ufeffid,name\r\n1,Łukasz\r\n")
    (person,) = open_audience(str(path), {}, PluginHost(entrypoints=False).source_factory)
    assert (person.id, person.name) == ("1", "Łukasz")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"empty\.csv has no header row"),
        ("name,email\nAnn,a@example.com\n", r"empty\.csv: no 'id' column \(columns: name, email\)"),
        ("id,email,EMAIL\n", r"empty\.csv: column 'EMAIL' appears twice"),
    ],
)
def test_csv_unusable_header_names_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path / "empty.csv", content)
    with pytest.raises(AudienceError, match=message):
        open_csv(str(path), {})


def test_missing_files_and_unknown_options(tmp_path: Path) -> None:
    with pytest.raises(AudienceError, match=r"nowhere\.csv does not exist"):
        open_csv(str(tmp_path / "nowhere.csv"), {})
    with pytest.raises(AudienceError, match=r"nowhere\.jsonl does not exist"):
        open_jsonl(str(tmp_path / "nowhere.jsonl"), {})
    path = _write(tmp_path / "p.csv", "id\n1\n")
    with pytest.raises(
        AudienceError, match=r"csv .*does not take option\(s\) delimeter.*delimiter"
    ):
        open_csv(str(path), {"delimeter": ";"})
    with pytest.raises(AudienceError, match="one character"):
        open_csv(str(path), {"delimiter": ";;"})
    with pytest.raises(AudienceError, match="unknown encoding"):
        open_csv(str(path), {"encoding": "utf-9"})


# -- JSONL ---------------------------------------------------------------------------------


def test_jsonl_keeps_json_types_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {"id": 1, "name": "佐藤 花子", "phone": "+819012345678", "score": 7.5,
             "credentials_breached": True, "tags": ["vip"]},
            ensure_ascii=False,
        ),
        "",
        '{"id": "2", "email": "b@example.com", ',  # cut off
        '["not", "an", "object"]',
        json.dumps({"name": "no id"}),
        json.dumps({"id": "5", "email": "nope", "phone": 2015550123, "region": "US"}),
    ]  # fmt: skip
    path = _write(tmp_path / "people.jsonl", "\n".join(lines) + "\n", bom=True)
    people = list(open_jsonl(str(path), {}))
    assert [(r.id, r.row) for r in people] == [
        ("1", 1),
        ("row-2", 2),
        ("row-3", 3),
        ("row-4", 4),
        ("5", 5),
    ]
    first = people[0]
    assert first.name == "佐藤 花子" and first.phone == "+819012345678"
    assert first.attrs == {"score": 7.5, "credentials_breached": True, "tags": ["vip"]}
    assert people[1].invalid["email"] == "malformed row: invalid JSON (line 3)"
    assert people[2].invalid["phone"] == "malformed row: not a JSON object (line 4)"
    assert people[3].invalid["push_token"] == "malformed row: missing id"
    assert people[4].invalid == {"email": INVALID_EMAIL}
    assert people[4].phone == "+12015550123"
    source = open_jsonl(str(path), {})
    assert list(source) == list(source)


# -- SQL -----------------------------------------------------------------------------------


@pytest.fixture
def people_db(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE customers (customer_id TEXT, full_name TEXT, mail TEXT, mobile TEXT,"
            " country TEXT, lang TEXT, breach TEXT, vip INTEGER, notified INTEGER DEFAULT 0)"
        )
        db.executemany(
            "INSERT INTO customers (customer_id, full_name, mail, mobile, country, lang, breach,"
            " vip) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("c1", "Ann Lee", "ann@example.com", "+12015550101", "US", "en-US", "b-7", 1),
                ("c2", "鈴木 健", "ken@example.jp", "080-1234-5678", "JP", "ja_JP", "b-7", 0),
                ("c3", "Bo", "not-an-address", None, "SE", "sv", "b-7", 0),
                ("c4", "Other", "o@example.com", None, "US", "en", "b-8", 0),
                ("c5", "Odd", "odd@example.com", None, "US", "en", "x' OR 1=1 --", 0),
            ]
            + [
                (f"m{i}", "Many", f"m{i}@example.com", None, "US", "en", "b-9", 0)
                for i in range(25)
            ],
        )
    return path


QUERY = (
    "SELECT customer_id AS id, full_name AS name, mail AS email, mobile AS phone, "
    "country AS region, lang AS locale, vip FROM customers WHERE breach = :breach "
    "ORDER BY customer_id"
)


def test_sql_source_with_a_bound_parameter(people_db: Path) -> None:
    source = open_sql(f"sqlite:///{people_db}", {"query": QUERY, "params": {"breach": "b-7"}})
    people = list(source)
    assert [r.id for r in people] == ["c1", "c2", "c3"]
    ann, ken, bo = people
    assert ann.attrs == {"vip": 1}
    assert ken.phone == "+818012345678" and ken.locale == "ja-JP"
    assert bo.invalid == {"email": INVALID_EMAIL}
    assert list(source) == people  # re-iterable: the query runs again


def test_sql_parameters_are_bound_not_pasted(people_db: Path) -> None:
    url = f"sqlite:///{people_db}"
    injection = "x' OR 1=1 --"
    (odd,) = open_sql(url, {"query": QUERY, "params": {"breach": injection}})
    # matched literally: the row whose value is that very string, and no other
    assert odd.id == "c5"
    pasted = QUERY.replace(":breach", f"'{injection}'")
    assert len(list(open_sql(url, {"query": pasted}))) == 30  # what pasting would have done


def test_sql_streams_in_batches(people_db: Path) -> None:
    source = open_sql(
        f"sqlite:///{people_db}",
        {"query": QUERY, "params": {"breach": "b-9"}, "batch_size": 4},
    )
    assert [r.row for r in source] == list(range(1, 26))


@pytest.mark.parametrize(
    "query",
    [
        "UPDATE customers SET notified = 1 RETURNING customer_id AS id, mail AS email",
        "DROP TABLE customers",  # DDL, which SQLite would otherwise commit at once
    ],
)
def test_sql_audiences_are_read_only(people_db: Path, query: str) -> None:
    with pytest.raises(AudienceError, match="the query failed: attempt to write a readonly"):
        list(open_sql(f"sqlite:///{people_db}", {"query": query}))
    with sqlite3.connect(people_db) as db:
        assert db.execute("SELECT COUNT(*), SUM(notified) FROM customers").fetchone() == (30, 0)


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("{db}", {}, "needs a query option"),
        ("{db}", {"query": "SELECT * FROM nowhere"}, "the query failed: no such table: nowhere"),
        ("{db}", {"query": QUERY}, "required for bind parameter 'breach'"),
        ("{db}", {"query": "SELECT mail FROM customers"}, r"no 'id' column \(columns: mail\)"),
        ("{db}", {"query": QUERY, "params": ["b-7"]}, "params must be a mapping"),
        ("{db}", {"query": QUERY, "sql": "x"}, r"does not take option\(s\) sql"),
        ("sqlite:///{dir}/misspelt.db", {"query": QUERY}, r"misspelt\.db does not exist"),
        ("not a url", {"query": QUERY}, "not a database URL"),
    ],
)
def test_sql_errors_say_what_to_fix(
    people_db: Path, target: str, options: Mapping[str, Any], message: str
) -> None:
    url = target.format(db=f"sqlite:///{people_db}", dir=people_db.parent)
    with pytest.raises(AudienceError, match=message):
        open_sql(url, options)


def test_sql_errors_never_show_the_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(AudienceError) as caught:
        open_sql("postgresql+psycopg://breach:s3cret@127.0.0.1:1/crm", {"query": "SELECT 1 AS id"})
    assert "s3cret" not in str(caught.value)
    assert "cannot connect" in str(caught.value)


# -- --audience spec and the plugin host ---------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("csv:people.csv", ("csv", "people.csv")),
        ("CSV:export.txt", ("csv", "export.txt")),
        ("jsonl:x", ("jsonl", "x")),
        ("sql:sqlite:///x.db", ("sql", "sqlite:///x.db")),
        ("sqlite:///x.db", ("sql", "sqlite:///x.db")),
        ("postgresql+psycopg://h/db", ("sql", "postgresql+psycopg://h/db")),
        ("people.csv", ("csv", "people.csv")),
        ("dir/People.CSV.gz", ("csv", "dir/People.CSV.gz")),
        ("people.tsv", ("csv", "people.tsv")),
        ("people.jsonl", ("jsonl", "people.jsonl")),
        ("people.ndjson.gz", ("jsonl", "people.ndjson.gz")),
        (r"C:\exports\people.csv", ("csv", r"C:\exports\people.csv")),
        ("s3:bucket/people.parquet", ("s3", "bucket/people.parquet")),
    ],
)
def test_parse_audience_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_audience_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("people.txt", "cannot tell the format"), ("", "cannot tell"), ("csv:", "no target")],
)
def test_parse_audience_spec_rejects(spec: str, message: str) -> None:
    with pytest.raises(AudienceError, match=message):
        parse_audience_spec(spec)


def test_core_registers_its_sources_and_open_audience_uses_them(
    tmp_path: Path, people_db: Path
) -> None:
    host = PluginHost(entrypoints=False)
    assert {scheme: plugin for scheme, (plugin, _) in host.sources.items()} == {
        "csv": "core",
        "jsonl": "core",
        "sql": "core",
    }
    path = _write(tmp_path / "p.ndjson", '{"id": "n1", "email": "n@example.com"}\n')
    assert [r.email for r in open_audience(str(path), {}, host.source_factory)] == ["n@example.com"]
    source = open_audience(
        f"sql:sqlite:///{people_db}",
        {"query": QUERY, "params": {"breach": "b-8"}},
        host.source_factory,
    )
    assert isinstance(source, AudienceSource)
    assert source.description.startswith("SQL query on sqlite:///")
    assert [r.id for r in source] == ["c4"]


def test_open_audience_rejects_a_plugin_returning_no_source() -> None:
    def factory(target: str, options: Mapping[str, Any]) -> Any:
        return [target]

    with pytest.raises(AudienceError, match="'weird' returned list"):
        open_audience("weird:thing", {}, lambda scheme: factory)


# -- memory --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["audience.csv", "audience.jsonl"])
def test_streaming_memory_stays_flat(tmp_path: Path, name: str) -> None:
    """100,000 people (13-25 MB of file, ~80 MB if held as objects) stream in under 20 MB."""
    path = tmp_path / name
    stats = generate_audience(path, 100_000, seed=11)
    source = open_audience(str(path), {}, PluginHost(entrypoints=False).source_factory)
    tracemalloc.start()
    try:
        count = reachable = 0
        for recipient in source:
            count += 1
            reachable += recipient.email is not None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == stats.rows == 100_000
    assert reachable == stats.with_email
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
