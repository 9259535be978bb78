"""Hacker News keyword monitoring through Algolia's ``search_by_date`` API (read-only).

``GET {url}/search_by_date?query=Q&tags=(story,comment)&numericFilters=created_at_i>=T``
answers newest first, ``hitsPerPage`` at a time, with ``page``/``nbPages``. The cursor keeps
the newest ``created_at_i`` seen and the ids seen in that very second, so the next poll asks
only for what is newer (``>=`` plus the id list: two comments in one second are both kept,
neither is fetched twice).

Items: the item page on news.ycombinator.com is the link an agent opens. A story's thread
is its canonical link (``link:...``), and a comment's thread is its story's link, so the
story, its comments, and the same article from Reddit or a blog are one conversation; a
story without a link (Ask HN) threads as ``hn:<story id>``.
"""

from __future__ import annotations

from html import escape
from typing import Any

import httpx

from ..config import SourceConfig
from ..models import SourceState
from ..sanitize import safe_url
from .api import (
    Api,
    ApiError,
    BudgetExceeded,
    PollLimits,
    PollOutcome,
    Row,
    Shape,
    base_url,
    dedupe,
    make_row,
    option_text,
)
from .links import thread_key

__all__ = ["DEFAULT_API", "poll"]

DEFAULT_API = "https://hn.algolia.com/api/v1"
HITS_PER_PAGE = 50
ITEM_URL = "https://news.ycombinator.com/item?id={}"
LABEL = "hackernews"


async def poll(client: httpx.AsyncClient, src: SourceConfig, state: SourceState,
               limits: PollLimits, now: float) -> PollOutcome:
    """New stories/comments matching ``query`` since the cursor (first poll: the newest
    page only, no deep backfill)."""
    query = option_text(src, "query")
    if not query:
        raise ApiError(f"{LABEL}: set `query:` to the words to watch for")
    tags = option_text(src, "tags", "(story,comment)") or "(story,comment)"
    api = Api(client, LABEL, base_url(src.url or DEFAULT_API, f"{LABEL} url"), limits)
    since = state.cursor.get("since")
    since = since if isinstance(since, int) and not isinstance(since, bool) else 0
    seen = {str(i) for i in state.cursor.get("ids", []) if isinstance(i, str | int)}
    params: dict[str, Any] = {"query": query, "tags": tags, "hitsPerPage": HITS_PER_PAGE}
    if since:
        params["numericFilters"] = f"created_at_i>={since}"
    outcome = PollOutcome()
    rows: list[Row] = []
    newest, newest_ids = since, set(seen)
    page = 0
    while True:
        try:
            result = await api.get("/search_by_date", {**params, "page": page})
        except ApiError as exc:
            if page == 0 or exc.status != 429:
                raise
            outcome.rate_wait, outcome.note = exc.retry_after, "rate limited while paging"
            break
        except BudgetExceeded:
            break
        body = Shape(result.data, "search_by_date", LABEL)
        hits = body.items("hits")
        for hit in hits:
            created = hit.number("created_at_i")
            object_id = hit.ident("objectID")
            if created < since or (created == since and object_id in seen):
                continue
            rows.append(_row(src, hit, object_id, created, now))
            if created > newest:
                newest, newest_ids = created, {object_id}
            elif created == newest:
                newest_ids.add(object_id)
        pages = body.number("nbPages", 1)
        page += 1
        if not since or not hits or page >= pages:
            break
        if page >= limits.max_pages:
            outcome.note = f"more than {page * HITS_PER_PAGE} new hits; the oldest were skipped"
            break
    outcome.rows = dedupe(rows)
    outcome.cursor = {"since": newest, "ids": sorted(newest_ids)[:200]}
    outcome.rate_wait = outcome.rate_wait or api.rate_wait
    return outcome


def _row(src: SourceConfig, hit: Shape, object_id: str, created: int, now: float) -> Row:
    tags = hit.data.get("_tags")
    is_comment = isinstance(tags, list) and "comment" in tags
    author = hit.text("author", "")
    if is_comment:
        story_id = hit.ident("story_id")
        story_url = hit.text("story_url", "")
        parent = hit.data.get("parent_id")
        parent_key = str(parent) if isinstance(parent, int | str) and str(parent) != "" \
            and str(parent) != story_id else story_id
        return make_row(
            src.id, src.type, object_id, fetched=now, url=ITEM_URL.format(object_id),
            title=f"Re: {hit.text('story_title', '')}", author=author, handle=author,
            published=float(created), html=hit.text("comment_text", ""),
            thread=thread_key(story_url) or f"hn:{story_id}", parent_key=parent_key,
            extra={"hn_id": object_id, "story_id": story_id, "link": safe_url(story_url)},
        )
    title = hit.text("title", "")
    link = hit.text("url", "")
    html = hit.text("story_text", "")
    if not html and link:
        html = f'<p><a href="{escape(link)}">{escape(link)}</a></p>'
    return make_row(
        src.id, src.type, object_id, fetched=now, url=ITEM_URL.format(object_id),
        title=title, author=author, handle=author, published=float(created), html=html,
        thread=thread_key(link) or f"hn:{object_id}",
        extra={"hn_id": object_id, "story_id": object_id, "link": safe_url(link),
               "points": hit.data.get("points") if isinstance(hit.data.get("points"), int)
               else None},
    )
