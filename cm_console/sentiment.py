"""Sentiment of social-media text with VADER, a lexicon built for exactly that kind of text.

Scored once, at ingestion, in the poller's parse workers (off the UI thread), on the title
and summary of entries from the last two weeks: older entries are history, not triage, and
scoring every entry of a 1,000-feed first poll would cost seconds of CPU for nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["WINDOW", "label", "score"]

WINDOW = 14 * 86400.0  # only entries published this recently get a score
MAX_CHARS = 600


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def score(text: str) -> float:
    """VADER's compound score in [-1, 1] for the first few hundred characters."""
    return float(_analyzer().polarity_scores(text[:MAX_CHARS])["compound"])


def label(value: float | None) -> str:
    """negative / neutral / positive with VADER's usual ±0.05 thresholds; unscored if None."""
    if value is None:
        return "unscored"
    if value >= 0.05:
        return "positive"
    if value <= -0.05:
        return "negative"
    return "neutral"
