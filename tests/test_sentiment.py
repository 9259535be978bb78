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


@pytest.mark.parametrize(("text", "expected"), [
    ("Die App ist seit dem Update nicht mehr zu gebrauchen, ich bin enttäuscht", "de"),
    ("The app is broken and I want my money back for this", "en"),
    ("Je ne peux pas ouvrir mes notes dans la nouvelle version", "fr"),
    ("El cobro es doble y no me responden por correo", "es"),
    ("De app werkt niet meer en ik ben mijn notities kwijt", "nl"),
    ("ok thanks", ""),  # too short to say: no guess rather than a wrong one
])
def test_language_guess(text: str, expected: str) -> None:
    from cm_console.language import guess

    assert guess(text) == expected


def test_language_rule_routes_german_posts(feed_server, make_config) -> None:
    import asyncio

    from cm_console.poller import Poller
    from cm_console.store import Store

    now = time.time()
    url = feed_server.add("/f", rss([
        {"guid": "1", "title": "Die App ist seit dem Update nicht mehr zu gebrauchen",
         "date": now - 60},
        {"guid": "2", "title": "The app is broken since the update and I am sad",
         "date": now - 30}]))
    config = make_config([{"id": "blog", "type": "rss", "url": url}],
                         team=[{"id": "bo", "name": "Bo"}],
                         rules=[{"id": "german", "match": {"language": ["de"]},
                                 "set": {"assign": "bo", "tags": ["de"]}}])
    store = Store(config.store)
    with Poller(config, store) as poller:
        asyncio.run(poller.poll())
    assert [i.title[:8] for i in store.items(store.item_ids(tag="de"))] == ["Die App "]
