"""Synthetic audiences for rehearsals, staging and load tests (``breach gen-audience``).

:func:`generate_audience` writes a deterministic, realistic audience file: the same seed gives the
same bytes. People are spread over locales (English majority; Japanese, German, French, Spanish,
Arabic) with matching regions, names in their own script, valid mobile numbers for the region
(mostly E.164, a fifth as dialled nationally), e-mail addresses, device push tokens for about a
third, missing contacts for some, and a share ``invalid_rate`` of rows with one invalid phone
number or e-mail address. Attributes: ``credentials_breached`` (about 30 % true) and
``customer_tier``.

E-mail addresses use only the reserved ``example.com``/``.net``/``.org`` domains and US numbers sit
in the 555-0100..0199 range kept for fiction, but other countries' numbers are random valid
mobiles that may belong to someone: use synthetic audiences in dry-run or sandbox mode only.

Rows are written as they are made, so memory stays flat at any size; a million rows take seconds.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import itertools
import json
import random
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from .audience import parse_audience_spec
from .contacts import normalise_phone
from .errors import AudienceError

COLUMNS = (
    "id",
    "name",
    "email",
    "phone",
    "push_token",
    "locale",
    "region",
    "credentials_breached",
    "customer_tier",
)

# (locale, region, share of people, trunk prefix dialled before a national number)
_LOCALES = (
    ("en-US", "US", 0.42, ""),
    ("en-GB", "GB", 0.14, "0"),
    ("ja-JP", "JP", 0.12, "0"),
    ("de-DE", "DE", 0.10, "0"),
    ("fr-FR", "FR", 0.09, "0"),
    ("es-ES", "ES", 0.07, ""),
    ("ar-AE", "AE", 0.06, "0"),
)

# Mobile ranges per region: (country code, leading national digits, random digits that follow).
# Each generated number is still checked, and redrawn in the rare case it is not valid.
_US_AREAS = ("201", "206", "212", "305", "312", "404", "415", "503", "617", "713", "808", "917")
_GB_MOBILE = ("7400", "7450", "7500", "7520", "7720", "7740", "7780", "7800", "7850", "7900")
_MOBILE: dict[str, tuple[tuple[str, str, int], ...]] = {
    "US": tuple(("1", f"{area}55501", 2) for area in _US_AREAS),
    "GB": tuple(("44", lead, 6) for lead in _GB_MOBILE),
    "JP": (("81", "90", 8), ("81", "80", 8), ("81", "70", 8)),
    "DE": (("49", "151", 8), ("49", "152", 8), ("49", "160", 7), ("49", "176", 8)),
    "FR": (("33", "6", 8), ("33", "7", 8)),
    "ES": (("34", "6", 8), ("34", "71", 7), ("34", "73", 7)),
    "AE": tuple(("971", f"5{digit}", 7) for digit in "024568"),
}

# language -> (given names, family names); "written|ascii" where the e-mail needs a romanised
# form, otherwise the ASCII form drops accents ("Jürgen" -> "jurgen"). Japanese puts the family
# name first.
_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
         "Elizabeth", "Sarah", "Thomas", "Emily", "Daniel", "Olivia", "Harry", "Amelia"),
        ("Smith", "Johnson", "Williams", "Brown", "Jones", "Taylor", "Davies", "Evans", "Wilson",
         "Miller", "Clarke", "O'Brien", "Walker", "Wright"),
    ),
    "ja": (
        ("太郎|taro", "花子|hanako", "翔太|shota", "結衣|yui", "大輔|daisuke", "さくら|sakura",
         "健|ken", "美咲|misaki"),
        ("佐藤|sato", "鈴木|suzuki", "高橋|takahashi", "田中|tanaka", "伊藤|ito",
         "渡辺|watanabe", "山本|yamamoto", "中村|nakamura"),
    ),
    "de": (
        ("Jürgen", "Lukas", "Anna", "Sophie", "Maximilian", "Hannah", "Jörg", "Lena"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Weiß|weiss", "Becker", "Schäfer",
         "Groß|gross"),
    ),
    "fr": (
        ("Émilie", "Hélène", "François", "Léa", "Chloé", "Louis", "Théo", "Camille"),
        ("Martin", "Bernard", "Dubois", "Lefèvre", "Girard", "Bonnet", "Fontaine", "Roux"),
    ),
    "es": (
        ("José", "María", "Lucía", "Sofía", "Martín", "Hugo", "Carmen", "Álvaro"),
        ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Pérez"),
    ),
    "ar": (
        ("محمد|mohammed", "فاطمة|fatima", "أحمد|ahmed", "مريم|maryam", "علي|ali", "نور|noor",
         "خالد|khalid", "ليلى|layla"),
        ("العلي|alali", "الحمادي|alhammadi", "المنصوري|almansoori", "الكعبي|alkaabi",
         "الشامسي|alshamsi", "حسن|hassan"),
    ),
}  # fmt: skip
_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com", "mx.example.net")
_TIERS = ("free", "plus", "business")
_TIER_WEIGHTS = (0.6, 0.3, 0.1)
_INVALID_PHONES = ("12345", "n/a", "+1 555 555 5555", "+44 12", "000-000")
_INVALID_EMAILS = ("{u}.example.com", "{u}@example", "{u}..x@example.com", "{u} x@example.com")

_P_PHONE, _P_EMAIL, _P_PUSH = 0.88, 0.90, 0.35  # share of people with each contact
_P_NATIONAL, _P_POSIX_LOCALE, _P_UPPER_DOMAIN, _P_BREACHED = 0.2, 0.05, 0.03, 0.30


@dataclass
class GenerationStats:
    """What :func:`generate_audience` wrote; "with_*" count valid contacts only."""

    path: Path
    fmt: str
    seed: int
    rows: int = 0
    with_phone: int = 0
    with_email: int = 0
    with_push: int = 0
    invalid_phone: int = 0
    invalid_email: int = 0
    no_contact: int = 0
    credentials_breached: int = 0
    locales: dict[str, int] = field(default_factory=dict)

    @property
    def invalid(self) -> int:
        """Rows with an invalid phone number or e-mail address (never both)."""
        return self.invalid_phone + self.invalid_email

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``--json``."""
        out = asdict(self)
        out["path"] = str(self.path)
        out["invalid"] = self.invalid
        return out


def generate_audience(
    path: Path,
    rows: int,
    *,
    seed: int = 0,
    fmt: Literal["csv", "jsonl"] | None = None,
    invalid_rate: float = 0.01,
) -> GenerationStats:
    """Write ``rows`` synthetic people to ``path`` (CSV or JSONL, by extension unless ``fmt``).

    A name ending in ``.gz`` is gzip-compressed (with a fixed timestamp, so still reproducible).
    Raises AudienceError for an unknown format, a bad argument, or a file that cannot be written.
    """
    if rows < 0:
        raise AudienceError(f"rows must be 0 or more, got {rows}")
    if not 0.0 <= invalid_rate <= 1.0:
        raise AudienceError(f"invalid_rate is a share between 0 and 1, got {invalid_rate}")
    chosen = fmt or _format_of(path)
    stats = GenerationStats(path=path, fmt=chosen, seed=seed)
    try:
        with _output(path) as out:
            if chosen == "csv":
                delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
                writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
                writer.writerow(COLUMNS)
                for person in _people(rows, seed, invalid_rate, stats):
                    person[7] = "true" if person[7] else "false"
                    writer.writerow(person)
            else:
                dumps = json.JSONEncoder(ensure_ascii=False).encode
                for person in _people(rows, seed, invalid_rate, stats):
                    record = {k: v for k, v in zip(COLUMNS, person, strict=True) if v != ""}
                    out.write(dumps(record) + "\n")
    except OSError as exc:
        raise AudienceError(f"cannot write synthetic audience {path}: {exc.strerror}") from None
    return stats


def _format_of(path: Path) -> Literal["csv", "jsonl"]:
    try:
        scheme, _ = parse_audience_spec(path.name)
    except AudienceError:
        scheme = ""
    if scheme == "csv":
        return "csv"
    if scheme == "jsonl":
        return "jsonl"
    raise AudienceError(
        f"cannot tell the format of {path.name}: name it .csv or .jsonl (optionally .gz), or "
        "choose the format explicitly"
    )


@contextmanager
def _output(path: Path) -> Iterator[TextIO]:
    if not path.name.lower().endswith(".gz"):
        with open(path, "w", encoding="utf-8", newline="") as text:
            yield text
        return
    # mtime=0 and no file name in the gzip header: same seed, same bytes.
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
        io.TextIOWrapper(packed, encoding="utf-8", newline="") as text,
    ):
        yield text


def _people(
    rows: int, seed: int, invalid_rate: float, stats: GenerationStats
) -> Iterator[list[Any]]:
    """Yield each person as a list in COLUMNS order, counting them into ``stats``."""
    rng = random.Random(seed)
    random_ = rng.random
    choice = rng.choice
    locales = [loc for loc, *_ in _LOCALES]
    cum_locales = list(itertools.accumulate(share for _, _, share, _ in _LOCALES))
    cum_tiers = list(itertools.accumulate(_TIER_WEIGHTS))
    info = {loc: (region, trunk) for loc, region, _, trunk in _LOCALES}
    given = {lang: _with_ascii(names[0]) for lang, names in _NAMES.items()}
    family = {lang: _with_ascii(names[1]) for lang, names in _NAMES.items()}
    phone_of = {region: _phone_maker(rng, region) for region in _MOBILE}
    counts = dict.fromkeys(locales, 0)
    push_token = _push_maker(rng)
    for index in range(1, rows + 1):
        locale = rng.choices(locales, cum_weights=cum_locales)[0]
        region, trunk = info[locale]
        lang = locale[:2]
        (g_name, g_ascii), (f_name, f_ascii) = choice(given[lang]), choice(family[lang])
        name = f"{f_name} {g_name}" if lang == "ja" else f"{g_name} {f_name}"
        uid = f"cust-{index:08d}"

        phone = email = push = ""
        has_phone, has_email = random_() < _P_PHONE, random_() < _P_EMAIL
        if has_phone:
            e164, national = phone_of[region]()
            phone = e164 if random_() >= _P_NATIONAL else trunk + national
        if has_email:
            sep = choice((".", "_", ""))
            local = f"{g_ascii}{sep}{f_ascii}{rng.randrange(1, 1000) if random_() < 0.6 else ''}"
            domain = choice(_DOMAINS)
            email = f"{local}@{domain.upper() if random_() < _P_UPPER_DOMAIN else domain}"
        if random_() < _P_PUSH:
            push = push_token()
        bad_phone = bad_email = False
        if random_() < invalid_rate:
            if has_phone and (not has_email or random_() < 0.5):
                phone, bad_phone = choice(_INVALID_PHONES), True
            else:
                email = choice(_INVALID_EMAILS).format(u=f"{g_ascii}{index}")
                bad_email = has_email = True
        shown_locale = locale.replace("-", "_") if random_() < _P_POSIX_LOCALE else locale
        breached = random_() < _P_BREACHED
        tier = rng.choices(_TIERS, cum_weights=cum_tiers)[0]

        stats.rows += 1
        counts[locale] += 1
        stats.with_phone += has_phone and not bad_phone
        stats.with_email += has_email and not bad_email
        stats.with_push += bool(push)
        stats.invalid_phone += bad_phone
        stats.invalid_email += bad_email
        stats.no_contact += not (
            (has_phone and not bad_phone) or (has_email and not bad_email) or push
        )
        stats.credentials_breached += breached
        yield [uid, name, email, phone, push, shown_locale, region, breached, tier]
    stats.locales = {loc: n for loc, n in counts.items() if n}


def _with_ascii(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(as written, ASCII form for e-mail addresses) for each "written[|ascii]" entry."""
    out = []
    for entry in names:
        written, _, ascii_form = entry.partition("|")
        if not ascii_form:
            ascii_form = unicodedata.normalize("NFKD", written).encode("ascii", "ignore").decode()
        out.append((written, "".join(c for c in ascii_form.lower() if c.isalnum())))
    return tuple(out)


def _phone_maker(rng: random.Random, region: str) -> Callable[[], tuple[str, str]]:
    """A function returning a valid mobile number of ``region``: (E.164, national digits)."""
    ranges = _MOBILE[region]
    randrange = rng.randrange

    def make() -> tuple[str, str]:
        for _ in range(50):
            code, lead, free = rng.choice(ranges)
            national = f"{lead}{randrange(10**free):0{free}d}"
            e164 = f"+{code}{national}"
            if normalise_phone(e164) is not None:
                return e164, national
        raise AssertionError(f"no valid {region} mobile number in 50 draws")  # ranges are wrong

    return make


def _push_maker(rng: random.Random) -> Callable[[], str]:
    """Device tokens shaped like APNs (64 hex digits) or FCM (an id, ':', ~145 more characters)."""
    getrandbits = rng.getrandbits

    def make() -> str:
        if getrandbits(1):
            return f"{getrandbits(256):064x}"
        raw = getrandbits(8 * 120).to_bytes(120, "big")
        token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return f"{token[:22]}:APA91b{token[22:]}"

    return make
