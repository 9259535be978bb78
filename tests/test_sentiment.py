"""Sentiment: VADER scores clear posts the right way, and ingestion scores recent entries."""

from __future__ import annotations

import time

import pytest

from cm_console.ingest import ingest_job
from cm_console.sentiment import label, score

from .feeds import rss


@pytest.mark.parametrize(("text", "expected"), [
    ("Genuinely impressed: support fixed my export bug overnight. Love it, thank you!",
     "positive"),
    ("This is the release I was waiting for. Sync just works now. Great job!", "positive"),
    ("Worst update ever. I lost my notes and support is useless. Cancelling.", "negative"),
    ("Charged twice and nobody answers. Terrible, I'm furious.", "negative"),
    ("The meeting is at 3pm in room 4.", "neutral"),
])
def test_clear_posts(text: str, expected: str) -> None:
    assert label(score(text)) == expected


def test_labels_and_unscored() -> None:
    assert label(None) == "unscored"
    assert label(0.05) == "positive" and label(-0.05) == "negative" and label(0.0) == "neutral"


def test_ingestion_scores_recent_entries_only() -> None:
    now = time.time()
    body = rss([
        {"guid": "new", "title": "I hate this, it is broken and awful", "date": now - 3600},
        {"guid": "old", "title": "I hate this, it is broken and awful",
         "date": now - 60 * 86400},
    ])
    rows, _parser = ingest_job("blog", "rss", body, "http://example.com/", now)
    scores = {doc["guid"]: doc["extra"].get("sentiment_score") for doc, _t, _h in rows}
    assert scores["id:new"] is not None and scores["id:new"] < -0.05
    assert scores["id:old"] is None  # history is not scored (see sentiment.WINDOW)
