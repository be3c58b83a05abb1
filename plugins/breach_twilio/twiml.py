"""TwiML for a notice read aloud: the voice, the text-to-speech chunks, the 4,000-character limit.

The call script (``notice.call``) is read once, and again after a pause so a person who picked up
late or was caught unprepared hears it in full. The TwiML travels inline in the Calls request,
where Twilio accepts at most 4,000 characters (error 32018); when the repeat does not fit the
script is read once, and when even that does not fit :class:`TwimlTooLong` names the locale and
how much to cut.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from orchestrator.plugin import BreachError, language
from orchestrator.plugin.textblocks import split_paragraphs

#: Twilio's limit for the ``Twiml`` parameter of a Calls request (error 32018).
TWIML_MAX_CHARS = 4000
#: Amazon Polly voices read at most 3,000 bytes per <Say> (Twilio warning 13521).
SAY_MAX_BYTES = 3000


class TwimlTooLong(BreachError):
    """The call script does not fit in inline TwiML, even read only once."""

    def __init__(self, locale: str, length: int) -> None:
        self.locale = locale
        self.length = length
        super().__init__(
            f"the call script for locale {locale!r} becomes {length} characters of TwiML; "
            f"Twilio accepts {TWIML_MAX_CHARS}: shorten the notice's `call` text by at least "
            f"{length - TWIML_MAX_CHARS} characters"
        )


@dataclass(frozen=True)
class Voice:
    """A <Say> language and voice; ``exact`` is False when the locale fell back to en-US."""

    language: str
    voice: str
    exact: bool = True


# BCP 47 tag -> (Twilio <Say> language, voice). Neural Polly voices where Polly has one; Arabic
# uses Modern Standard Arabic ("arb", Zeina) unless the Gulf variant is asked for.
_VOICES: dict[str, tuple[str, str]] = {
    "en": ("en-US", "Polly.Joanna-Neural"),
    "en-us": ("en-US", "Polly.Joanna-Neural"),
    "en-gb": ("en-GB", "Polly.Amy-Neural"),
    "en-au": ("en-AU", "Polly.Olivia-Neural"),
    "en-in": ("en-IN", "Polly.Kajal-Neural"),
    "ja": ("ja-JP", "Polly.Takumi-Neural"),
    "de": ("de-DE", "Polly.Vicki-Neural"),
    "de-at": ("de-AT", "Polly.Hannah-Neural"),
    "fr": ("fr-FR", "Polly.Lea-Neural"),
    "fr-ca": ("fr-CA", "Polly.Gabrielle-Neural"),
    "es": ("es-ES", "Polly.Lucia-Neural"),
    "es-mx": ("es-MX", "Polly.Mia-Neural"),
    "es-us": ("es-US", "Polly.Lupe-Neural"),
    "ar": ("arb", "Polly.Zeina"),
    "ar-ae": ("ar-AE", "Polly.Hala-Neural"),
    "zh": ("cmn-CN", "Polly.Zhiyu-Neural"),
    "pt": ("pt-BR", "Polly.Camila-Neural"),
    "pt-pt": ("pt-PT", "Polly.Ines-Neural"),
    "it": ("it-IT", "Polly.Bianca-Neural"),
    "ko": ("ko-KR", "Polly.Seoyeon-Neural"),
    "nl": ("nl-NL", "Polly.Laura-Neural"),
    "pl": ("pl-PL", "Polly.Ola-Neural"),
}
FALLBACK_VOICE = Voice("en-US", "Polly.Joanna-Neural", exact=False)

# a sentence and the spaces after it; the pieces put together give back the whole text
_SENTENCE = re.compile(r".+?(?:[.!?。！？؟]+\s*|$)", re.DOTALL)


def voice_for(text_locale: str, recipient_locale: str | None = None) -> Voice:
    """The voice for text written in ``text_locale``.

    The text's language decides (a Japanese script needs a Japanese voice whatever the person's
    settings say); the recipient's locale only refines the accent when it is the same language,
    e.g. a Spanish notice for a recipient in ``es-MX`` gets the Mexican voice.
    """
    text_language = language(text_locale)
    candidates = []
    if recipient_locale and language(recipient_locale) == text_language:
        candidates.append(recipient_locale.lower())
    candidates += [text_locale.lower(), text_language]
    for tag in candidates:
        # try "es-mx-x-foo", then "es-mx", before the bare language
        parts = tag.split("-")
        for n in range(len(parts), 0, -1):
            found = _VOICES.get("-".join(parts[:n]))
            if found:
                return Voice(*found)
    return FALLBACK_VOICE


def _chunks(text: str, max_bytes: int) -> list[str]:
    """Split ``text`` at sentence ends so no chunk exceeds ``max_bytes`` of UTF-8."""
    if len(text.encode()) <= max_bytes:
        return [text]
    out: list[str] = []
    current = ""
    for piece in _SENTENCE.findall(text):
        if len((current + piece).encode()) <= max_bytes:
            current += piece
            continue
        out.append(current)
        # one sentence longer than the limit: cut at the last space that fits, else anywhere
        while len(piece.encode()) > max_bytes:
            cut = len(piece.encode()[:max_bytes].decode(errors="ignore"))
            space = piece.rfind(" ", 0, cut)
            cut = space if space > 0 else cut
            out.append(piece[:cut])
            piece = piece[cut:]
        current = piece
    out.append(current)
    return [chunk.strip() for chunk in out if chunk.strip()]


def script_parts(script: str) -> list[str]:
    """The script as <Say>-sized parts: one per paragraph, long paragraphs split further."""
    # cleaned of characters XML 1.0 forbids: hostile text must not make the TwiML unparseable
    paragraphs = [" ".join(p.split()) for p in split_paragraphs(script)]
    return [chunk for p in paragraphs for chunk in _chunks(p, SAY_MAX_BYTES)]


def _response(parts: list[str], voice: Voice, repeat: bool) -> str:
    root = ET.Element("Response")
    # a second of silence first: the first words are otherwise lost while the phone reaches the ear
    ET.SubElement(root, "Pause", length="1")
    for reading in range(2 if repeat else 1):
        if reading:
            ET.SubElement(root, "Pause", length="2")
        for i, part in enumerate(parts):
            if i:
                ET.SubElement(root, "Pause", length="1")
            say = ET.SubElement(root, "Say", language=voice.language, voice=voice.voice)
            say.text = part
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class Twiml:
    """A TwiML document and what it reads: the <Say> parts and how many times."""

    xml: str
    parts: list[str]
    readings: int


def build_twiml(script: str, voice: Voice, *, locale: str = "?") -> Twiml:
    """TwiML reading ``script`` twice (once if twice does not fit); raises :class:`TwimlTooLong`."""
    parts = script_parts(script)
    for readings in (2, 1):
        xml = _response(parts, voice, repeat=readings == 2)
        if len(xml) <= TWIML_MAX_CHARS:
            return Twiml(xml, parts, readings)
    raise TwimlTooLong(locale, len(xml))
