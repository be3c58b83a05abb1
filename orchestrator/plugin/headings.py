"""The headings of a written breach notice, per language.

English follows California Civ. Code 1798.82(d)(1): the title "Notice of Data Breach" and the
headings "What Happened", "What Information Was Involved", "What We Are Doing", "What You Can Do",
"For More Information". The notice's ``impact`` (required by GDPR Art. 34 and by this project)
is an extra section between the information involved and the measures, which the statute allows
as supplementary information. Besides a heading for every section of
:meth:`~orchestrator.message.RenderedNotice.sections`, a table holds the title and the labels of
the notice's date, the breach's date and the incident reference.

Plugins that render notices (e-mail, web page, ...) share these tables so that a person reads the
same headings on every channel; a plugin adds its own labels next to them. Languages without a
table fall back to English headings; the notice text itself is always the playbook's own
translation.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from ..locales import language

__all__ = ["HEADINGS", "headings_for"]

#: language -> heading key -> heading. Every table has the same keys, in reading order.
HEADINGS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "title": "Notice of Data Breach",
        "what_happened": "What Happened",
        "data_involved": "What Information Was Involved",
        "impact": "How This May Affect You",
        "measures": "What We Are Doing",
        "advice": "What You Can Do",
        "remedies": "What We Offer You",
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
        "remedies": "当社がご提供する救済措置",
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
        "remedies": "Was wir Ihnen anbieten",
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
        "remedies": "Ce que nous vous proposons",
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
        "remedies": "Lo que le ofrecemos",
        "contact": "Más información",
        "notice_date": "Fecha de este aviso",
        "breach_date": "Fecha de la filtración",
        "reference": "Referencia",
    },
    "ar": {
        "title": "إشعار بخرق البيانات",
        "what_happened": "ماذا حدث",
        "data_involved": "المعلومات المعنية",
        "impact": "كيف قد يؤثر ذلك عليك",
        "measures": "ما الذي نقوم به",
        "advice": "ما يمكنك فعله",
        "remedies": "ما نقدمه لك",
        "contact": "لمزيد من المعلومات",
        "notice_date": "تاريخ هذا الإشعار",
        "breach_date": "تاريخ الخرق",
        "reference": "المرجع",
    },
    "zh": {
        "title": "数据泄露通知",
        "what_happened": "发生了什么",
        "data_involved": "涉及哪些信息",
        "impact": "可能对您造成的影响",
        "measures": "我们正在采取的措施",
        "advice": "您可以采取的措施",
        "remedies": "我们提供的补救措施",
        "contact": "更多信息",
        "notice_date": "本通知日期",
        "breach_date": "泄露发生日期",
        "reference": "参考编号",
    },
    "pt": {
        "title": "Aviso de violação de dados",
        "what_happened": "O que aconteceu",
        "data_involved": "Quais informações foram envolvidas",
        "impact": "Como isso pode afetar você",
        "measures": "O que estamos fazendo",
        "advice": "O que você pode fazer",
        "remedies": "O que oferecemos a você",
        "contact": "Mais informações",
        "notice_date": "Data deste aviso",
        "breach_date": "Data da violação",
        "reference": "Referência",
    },
}


def headings_for(locale: str, languages: Collection[str] | None = None) -> dict[str, str]:
    """The headings for ``locale``'s language, English when there is no table for it.

    ``languages`` limits the tables used to those a channel has been reviewed in; any other
    language gets the English headings too. The result is a new dict, which the caller may
    extend with its own labels.
    """
    lang = language(locale)
    if lang not in HEADINGS or (languages is not None and lang not in languages):
        lang = "en"
    return dict(HEADINGS[lang])
