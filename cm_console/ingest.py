"""What runs in the poller's parse worker processes: parse a fetched body, then score it.

Both steps are CPU-bound Python, which is why they run in processes (in threads they would
take turns with the TUI for the GIL). The result is plain picklable rows.
"""

from __future__ import annotations

from typing import Any

from .language import guess
from .sentiment import WINDOW, score
from .sources import parse_job

__all__ = ["ingest_job", "score_rows"]

Row = tuple[dict[str, Any], str, str]


def score_rows(rows: list[Row], fetched: float) -> list[Row]:
    """Add ``extra.sentiment_score`` and ``extra.language`` to recent rows (see
    sentiment.WINDOW): what the rules, the list and the reports read."""
    for doc, _text, _html in rows:
        if doc.get("published", 0.0) >= fetched - WINDOW:
            text = f"{doc.get('title', '')}. {doc.get('summary', '')}"
            extra = doc.setdefault("extra", {})
            extra["sentiment_score"] = score(text)
            language = guess(text)
            if language:
                extra["language"] = language
    return rows


def ingest_job(source_id: str, source_type: str, body: bytes, base_url: str,
               fetched: float) -> tuple[list[Row], str]:
    """parse_job + sentiment, in one trip to a worker."""
    rows, parser = parse_job(source_id, source_type, body, base_url, fetched)
    return score_rows(rows, fetched), parser
