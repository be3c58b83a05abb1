"""SMS limits Twilio enforces, and the segment count a body is billed as.

Segment arithmetic lives in the core (:func:`orchestrator.plugin.count_segments`): it is exact
(an escape pair or a surrogate pair is never split across two parts) and playbook validation uses
the same count, so the preview and ``breach validate`` can never disagree. It is re-exported here
for the plugin's callers.
"""

from __future__ import annotations

from orchestrator.plugin import BreachError, SegmentCount, count_segments

__all__ = ["MAX_BODY_CHARS", "SegmentCount", "SmsTooLong", "count_segments"]

#: Twilio rejects bodies longer than this (error 21617).
MAX_BODY_CHARS = 1600


class SmsTooLong(BreachError):
    """The SMS body is longer than Twilio accepts."""
