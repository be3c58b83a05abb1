"""Labels of the public notice page, per language, and language names.

The notice's title and section headings are the core's (:mod:`orchestrator.plugin.headings`), shared
with the e-mail; this module adds what only the page and its feed show: the update date, the
language switcher, the feed links. Languages without a table fall back to English labels; the
notice text itself is always the playbook's own translation.
"""

from __future__ import annotations

from typing import Final

from orchestrator.plugin import language
from orchestrator.plugin.headings import headings_for

#: language -> label key -> label, next to the core's headings.
PAGE_LABELS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "updated": "Last updated",
        "languages": "This notice in other languages",
        "feed": "Follow updates (Atom feed)",
        "skip": "Skip to the notice",
        "feed_title": "Data breach notices",
    },
    "ja": {
        "updated": "最終更新日",
        "languages": "他の言語で読む",
        "feed": "更新情報（Atomフィード）",
        "skip": "本文へ移動",
        "feed_title": "個人データ漏えいに関するお知らせ",
    },
    "de": {
        "updated": "Zuletzt aktualisiert",
        "languages": "Diese Benachrichtigung in anderen Sprachen",
        "feed": "Aktualisierungen verfolgen (Atom-Feed)",
        "skip": "Zur Benachrichtigung springen",
        "feed_title": "Benachrichtigungen über Datenschutzverletzungen",
    },
    "fr": {
        "updated": "Dernière mise à jour",
        "languages": "Cette notification dans d’autres langues",
        "feed": "Suivre les mises à jour (flux Atom)",
        "skip": "Aller à la notification",
        "feed_title": "Notifications de violation de données",
    },
    "es": {
        "updated": "Última actualización",
        "languages": "Este aviso en otros idiomas",
        "feed": "Seguir las actualizaciones (feed Atom)",
        "skip": "Ir al aviso",
        "feed_title": "Avisos de filtración de datos",
    },
    "ar": {
        "updated": "آخر تحديث",
        "languages": "هذا الإشعار بلغات أخرى",
        "feed": "متابعة التحديثات (موجز Atom)",
        "skip": "انتقل إلى الإشعار",
        "feed_title": "إشعارات خرق البيانات",
    },
    "zh": {
        "updated": "最后更新",
        "languages": "本通知的其他语言版本",
        "feed": "关注更新（Atom 订阅）",
        "skip": "跳至通知正文",
        "feed_title": "数据泄露通知",
    },
    "pt": {
        "updated": "Última atualização",
        "languages": "Este aviso em outros idiomas",
        "feed": "Acompanhar as atualizações (feed Atom)",
        "skip": "Ir para o aviso",
        "feed_title": "Avisos de violação de dados",
    },
}

#: Each language's name in itself, for the language switcher.
AUTONYMS: Final[dict[str, str]] = {
    "en": "English",
    "ja": "日本語",
    "de": "Deutsch",
    "fr": "Français",
    "es": "Español",
    "ar": "العربية",
    "zh": "中文",
    "zh-hans": "简体中文",
    "zh-hant": "繁體中文",
    "pt": "Português",
    "pt-br": "Português (Brasil)",
    "it": "Italiano",
    "ko": "한국어",
    "nl": "Nederlands",
    "pl": "Polski",
    "he": "עברית",
    "fa": "فارسی",
    "ru": "Русский",
    "tr": "Türkçe",
    "uk": "Українська",
}


def labels_for(locale: str) -> dict[str, str]:
    """The headings and page labels for ``locale``'s language, English when there is no table."""
    return headings_for(locale) | PAGE_LABELS.get(language(locale), PAGE_LABELS["en"])


def autonym(locale: str) -> str:
    """The locale's language named in itself, or the locale code when unknown."""
    return AUTONYMS.get(locale.lower()) or AUTONYMS.get(language(locale)) or locale
