"""Headings and labels of the public notice page, per language, and language names.

English headings follow California Civ. Code 1798.82(d)(1) ("Notice of Data Breach", "What
Happened", ...); ``impact`` is an extra section, as the statute allows supplementary information.
Languages without a table fall back to English labels; the notice text itself is always the
playbook's own translation.
"""

from __future__ import annotations

from typing import Final

LABELS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "title": "Notice of Data Breach",
        "what_happened": "What Happened",
        "data_involved": "What Information Was Involved",
        "impact": "How This May Affect You",
        "measures": "What We Are Doing",
        "advice": "What You Can Do",
        "contact": "For More Information",
        "notice_date": "Date of this notice",
        "updated": "Last updated",
        "breach_date": "Date of the breach",
        "languages": "This notice in other languages",
        "reference": "Reference",
        "feed": "Follow updates (Atom feed)",
        "skip": "Skip to the notice",
        "feed_title": "Data breach notices",
    },
    "ja": {
        "title": "個人データ漏えいに関するお知らせ",
        "what_happened": "発生した事象",
        "data_involved": "対象となる情報",
        "impact": "想定される影響",
        "measures": "当社の対応",
        "advice": "お客様にお願いしたいこと",
        "contact": "お問い合わせ先",
        "notice_date": "本お知らせの日付",
        "updated": "最終更新日",
        "breach_date": "漏えいの発生日",
        "languages": "他の言語で読む",
        "reference": "参照番号",
        "feed": "更新情報（Atomフィード）",
        "skip": "本文へ移動",
        "feed_title": "個人データ漏えいに関するお知らせ",
    },
    "de": {
        "title": "Benachrichtigung über eine Datenschutzverletzung",
        "what_happened": "Was ist passiert?",
        "data_involved": "Welche Daten sind betroffen?",
        "impact": "Mögliche Folgen für Sie",
        "measures": "Was wir unternehmen",
        "advice": "Was Sie tun können",
        "contact": "Weitere Informationen",
        "notice_date": "Datum dieser Benachrichtigung",
        "updated": "Zuletzt aktualisiert",
        "breach_date": "Zeitraum der Verletzung",
        "languages": "Diese Benachrichtigung in anderen Sprachen",
        "reference": "Referenz",
        "feed": "Aktualisierungen verfolgen (Atom-Feed)",
        "skip": "Zur Benachrichtigung springen",
        "feed_title": "Benachrichtigungen über Datenschutzverletzungen",
    },
    "fr": {
        "title": "Notification de violation de données",
        "what_happened": "Ce qui s’est passé",
        "data_involved": "Informations concernées",
        "impact": "Conséquences possibles pour vous",
        "measures": "Ce que nous faisons",
        "advice": "Ce que vous pouvez faire",
        "contact": "Pour en savoir plus",
        "notice_date": "Date de cette notification",
        "updated": "Dernière mise à jour",
        "breach_date": "Date de la violation",
        "languages": "Cette notification dans d’autres langues",
        "reference": "Référence",
        "feed": "Suivre les mises à jour (flux Atom)",
        "skip": "Aller à la notification",
        "feed_title": "Notifications de violation de données",
    },
    "es": {
        "title": "Aviso de filtración de datos",
        "what_happened": "Qué sucedió",
        "data_involved": "Qué información se vio afectada",
        "impact": "Cómo puede afectarle",
        "measures": "Qué estamos haciendo",
        "advice": "Qué puede hacer usted",
        "contact": "Más información",
        "notice_date": "Fecha de este aviso",
        "updated": "Última actualización",
        "breach_date": "Fecha de la filtración",
        "languages": "Este aviso en otros idiomas",
        "reference": "Referencia",
        "feed": "Seguir las actualizaciones (feed Atom)",
        "skip": "Ir al aviso",
        "feed_title": "Avisos de filtración de datos",
    },
    "ar": {
        "title": "إشعار بخرق البيانات",
        "what_happened": "ماذا حدث",
        "data_involved": "المعلومات المعنية",
        "impact": "كيف قد يؤثر ذلك عليك",
        "measures": "ما الذي نقوم به",
        "advice": "ما يمكنك فعله",
        "contact": "لمزيد من المعلومات",
        "notice_date": "تاريخ هذا الإشعار",
        "updated": "آخر تحديث",
        "breach_date": "تاريخ الخرق",
        "languages": "هذا الإشعار بلغات أخرى",
        "reference": "المرجع",
        "feed": "متابعة التحديثات (موجز Atom)",
        "skip": "انتقل إلى الإشعار",
        "feed_title": "إشعارات خرق البيانات",
    },
    "zh": {
        "title": "数据泄露通知",
        "what_happened": "发生了什么",
        "data_involved": "涉及哪些信息",
        "impact": "可能对您造成的影响",
        "measures": "我们正在采取的措施",
        "advice": "您可以采取的措施",
        "contact": "更多信息",
        "notice_date": "本通知日期",
        "updated": "最后更新",
        "breach_date": "泄露发生日期",
        "languages": "本通知的其他语言版本",
        "reference": "参考编号",
        "feed": "关注更新（Atom 订阅）",
        "skip": "跳至通知正文",
        "feed_title": "数据泄露通知",
    },
    "pt": {
        "title": "Aviso de violação de dados",
        "what_happened": "O que aconteceu",
        "data_involved": "Quais informações foram envolvidas",
        "impact": "Como isso pode afetar você",
        "measures": "O que estamos fazendo",
        "advice": "O que você pode fazer",
        "contact": "Mais informações",
        "notice_date": "Data deste aviso",
        "updated": "Última atualização",
        "breach_date": "Data da violação",
        "languages": "Este aviso em outros idiomas",
        "reference": "Referência",
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

RTL_LANGUAGES: Final = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "dv", "ckb", "sd", "ug"})


def language(locale: str) -> str:
    """The primary language subtag, lower-case: ``zh-Hans`` -> ``zh``."""
    return locale.split("-")[0].lower()


def labels_for(locale: str) -> dict[str, str]:
    """The labels for ``locale``'s language, English when there is no table for it."""
    return LABELS.get(language(locale), LABELS["en"])


def direction(locale: str) -> str:
    """``rtl`` or ``ltr`` for the HTML ``dir`` attribute."""
    return "rtl" if language(locale) in RTL_LANGUAGES else "ltr"


def autonym(locale: str) -> str:
    """The locale's language named in itself, or the locale code when unknown."""
    return AUTONYMS.get(locale.lower()) or AUTONYMS.get(language(locale)) or locale
