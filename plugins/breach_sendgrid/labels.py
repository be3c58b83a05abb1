"""Headings and labels of the e-mail notice, per language.

English follows California Civ. Code 1798.82(d)(1): the title "Notice of Data Breach" and the
headings "What Happened", "What Information Was Involved", "What We Are Doing", "What You Can Do",
"For More Information". The notice's ``impact`` (required by GDPR Art. 34 and by this project)
is an extra section between the information involved and the measures, which the statute allows
as supplementary information. Languages without a table fall back to English headings.
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
        "breach_date": "Date of the breach",
        "reference": "Reference",
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
        "breach_date": "漏えいの発生日",
        "reference": "参照番号",
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
        "breach_date": "Zeitraum der Verletzung",
        "reference": "Referenz",
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
        "breach_date": "Date de la violation",
        "reference": "Référence",
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
        "breach_date": "Fecha de la filtración",
        "reference": "Referencia",
    },
}

#: Languages written right to left (primary subtags).
RTL_LANGUAGES: Final = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "dv", "ckb", "sd", "ug"})


def language(locale: str) -> str:
    """The primary language subtag, lower-case: ``pt-BR`` -> ``pt``."""
    return locale.split("-")[0].lower()


def labels_for(locale: str) -> dict[str, str]:
    """The labels for ``locale``'s language, English when there is no table for it."""
    return LABELS.get(language(locale), LABELS["en"])


def direction(locale: str) -> str:
    """``rtl`` or ``ltr`` for the HTML ``dir`` attribute."""
    return "rtl" if language(locale) in RTL_LANGUAGES else "ltr"
