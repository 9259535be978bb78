"""Discourse: latest posts (or a search), the account's notifications; replies and private
messages out.

Auth: ``Api-Key`` + ``Api-Username`` (an admin-issued key) or ``User-Api-Key`` (a user's
own key), both ``${ENV}`` references. Without either the forum is read anonymously (public
categories only, no notifications, no writes).

Streams, each with its cursor (the highest id seen):

- ``posts``: ``GET /posts.json`` (newest first, ``before=<post id>`` for older pages),
  optionally kept to ``categories`` (ids or slugs; slugs are resolved once through
  ``/categories.json`` and remembered in the cursor);
- ``search`` instead of ``posts`` when ``query`` is set: ``GET /search.json?q=... order:latest``
  (search results carry a blurb, not the whole post);
- ``notifications``: ``GET /notifications.json``; mentions, replies, quotes, private messages
  and watched-topic posts; the post itself is fetched (``/posts/{id}.json``, a few a poll)
  so the item has its text.

Item keys are ``<topic id>/<post number>``, so the same post reached through two streams
is one item, and a reply's parent (``reply_to_post_number``) is known without a lookup.
The thread is the topic (as a canonical ``/t/<id>`` link, so an HN story or Reddit post
linking the topic joins the conversation).

Writes: reply ``POST /posts.json {raw, topic_id, reply_to_post_number}``; private message
``POST /posts.json {title, raw, target_recipients, archetype: "private_message"}``.
Discourse has no idempotency key, so every ``raw`` we send ends with an HTML comment
carrying the outbox entry's key (Discourse does not render comments: readers never see it),
and a *retry* first looks at this account's recent posts (``/user_actions.json``, then
``/posts/{id}.json`` for their raw) and does not post again when the marker is there. A
first attempt that timed out after the forum stored the post therefore posts once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from ..config import SourceConfig
from ..models import Item, OutboxEntry, SourceState
from ..sanitize import one_line
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
    delivery_error,
    make_row,
    option_flag,
    option_list,
    option_text,
    parse_iso,
    secret,
    send_client,
    send_request,
)
from .links import thread_key

__all__ = ["can_send", "marker", "poll", "send"]

LABEL = "discourse"
# notification_type values worth an agent's attention: mentioned, replied, quoted,
# private_message, posted (watched topic), group_mentioned.
NOTIFY_TYPES = frozenset({1, 2, 3, 6, 9, 15})
POST_FETCHES = 10  # /posts/{id}.json lookups per poll for notifications


def _base(src: SourceConfig) -> str:
    if not src.url:
        raise ApiError(f"{LABEL}: `url:` (the forum's base address) is required")
    return base_url(src.url, f"{LABEL} url")


def _auth(src: SourceConfig, required: bool) -> dict[str, str]:
    user_key = secret(src, "user_api_key", required=False)
    if user_key:
        return {"User-Api-Key": user_key}
    key = secret(src, "api_key", required=False)
    if key:
        username = option_text(src, "api_username")
        if not username:
            raise ApiError(f"{LABEL}: `api_key` needs `api_username` (the account it acts as)")
        return {"Api-Key": key, "Api-Username": username}
    if required:
        raise ApiError(f"{LABEL}: writing needs `api_key` + `api_username` or `user_api_key`")
    return {}


async def poll(client: httpx.AsyncClient, src: SourceConfig, state: SourceState,
               limits: PollLimits, now: float) -> PollOutcome:
    base = _base(src)
    headers = _auth(src, required=False)
    api = Api(client, LABEL, base, limits, headers)
    outcome = PollOutcome(cursor=dict(state.cursor))
    rows: list[Row] = []
    query = option_text(src, "query")
    try:
        if query:
            rows += await _search(api, src, base, query, outcome, now)
        else:
            rows += await _posts(api, src, base, outcome, now)
        if option_flag(src, "notifications", bool(headers)):
            if not headers:
                raise ApiError(f"{LABEL}: notifications need `api_key` or `user_api_key`")
            rows += await _notifications(api, src, base, outcome, now)
    except ApiError as exc:
        if exc.status != 429 or not rows:
            raise
        outcome.rate_wait, outcome.note = exc.retry_after, "rate limited; the rest waits"
    outcome.rows = dedupe(rows)
    outcome.rate_wait = outcome.rate_wait or api.rate_wait
    return outcome


def _last(cursor: dict[str, Any], key: str) -> int:
    value = cursor.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


async def _category_ids(api: Api, src: SourceConfig, outcome: PollOutcome) -> set[int]:
    wanted = option_list(src, "categories")
    ids = {int(w) for w in wanted if w.isdigit()}
    slugs = [w.lower() for w in wanted if not w.isdigit()]
    known = outcome.cursor.get("category_slugs")
    known = known if isinstance(known, dict) else {}
    if any(s not in known for s in slugs):
        data = Shape((await api.get("/categories.json")).data, "categories.json", LABEL)
        listing = data.obj("category_list")
        assert listing is not None
        known = {}
        for cat in listing.items("categories"):
            known[cat.text("slug").lower()] = int(cat.ident("id"))
        outcome.cursor["category_slugs"] = known
    for slug in slugs:
        if slug not in known:
            raise ApiError(f"{LABEL}: no category with the slug {one_line(slug, 60)!r}")
        ids.add(int(known[slug]))
    return ids


async def _posts(api: Api, src: SourceConfig, base: str, outcome: PollOutcome,
                 now: float) -> list[Row]:
    """``/posts.json`` newest first; page back with ``before`` until the cursor is reached."""
    last = _last(outcome.cursor, "posts")
    categories = await _category_ids(api, src, outcome) if option_list(src, "categories") \
        else set()
    rows: list[Row] = []
    newest = last
    params: dict[str, Any] = {}
    pages = 0
    while True:
        try:
            result = await api.get("/posts.json", params or None)
        except BudgetExceeded:
            break
        except ApiError as exc:
            if pages == 0 or exc.status != 429:
                raise
            outcome.rate_wait = exc.retry_after
            break
        pages += 1
        posts = Shape(result.data, "posts.json", LABEL).items("latest_posts")
        ids = []
        for post in posts:
            post_id = int(post.ident("id"))
            ids.append(post_id)
            if post_id <= last:
                continue
            newest = max(newest, post_id)
            category = post.data.get("category_id")
            if categories and category not in categories:
                continue
            rows.append(_post_row(src, base, post, now))
        if (not last or not ids or min(ids) <= last + 1 or pages >= api.limits.max_pages
                or ("before" in params and min(ids) >= params["before"])):
            break
        params = {"before": min(ids)}
    outcome.cursor["posts"] = newest
    return rows


async def _search(api: Api, src: SourceConfig, base: str, query: str,
                  outcome: PollOutcome, now: float) -> list[Row]:
    last = _last(outcome.cursor, "search")
    result = await api.get("/search.json", {"q": f"{query} order:latest"})
    data = Shape(result.data, "search.json", LABEL)
    topics = {}
    for topic in data.items("topics", optional=True):
        topics[topic.ident("id")] = topic
    rows: list[Row] = []
    newest = last
    for post in data.items("posts", optional=True):
        post_id = int(post.ident("id"))
        if post_id <= last:
            continue
        newest = max(newest, post_id)
        topic = topics.get(post.ident("topic_id"))
        rows.append(_post_row(src, base, post, now, topic=topic, blurb=True))
    outcome.cursor["search"] = newest
    return rows


async def _notifications(api: Api, src: SourceConfig, base: str, outcome: PollOutcome,
                         now: float) -> list[Row]:
    last = _last(outcome.cursor, "notifications")
    result = await api.get("/notifications.json")
    notes = Shape(result.data, "notifications.json", LABEL).items("notifications")
    rows: list[Row] = []
    newest = last
    fetched: dict[int, Shape | None] = {}
    for note in notes:
        note_id = int(note.ident("id"))
        if note_id <= last:
            continue
        newest = max(newest, note_id)
        if note.number("notification_type", 0) not in NOTIFY_TYPES:
            continue
        if not last and note.data.get("read") is True:
            continue  # first poll: what the account already read on the web is not news
        topic_id = note.data.get("topic_id")
        post_number = note.data.get("post_number")
        if not isinstance(topic_id, int) or not isinstance(post_number, int):
            continue
        data = note.obj("data", optional=True)
        title = data.text("topic_title", "") if data else ""
        post_id = data.data.get("original_post_id") if data else None
        private = note.number("notification_type", 0) == 6
        if isinstance(post_id, int) and (post_id in fetched or len(fetched) < POST_FETCHES):
            if post_id not in fetched:
                fetched[post_id] = await _one_post(api, post_id)
            post = fetched[post_id]
            if post is not None:
                rows.append(_post_row(src, base, post, now, title=title, private=private))
                continue
        author = (data.text("original_username", "") or data.text("display_username", "")) \
            if data else ""
        slug = note.text("slug", "") or "topic"
        rows.append(make_row(
            src.id, src.type, f"{topic_id}/{post_number}", fetched=now,
            url=f"{base}/t/{quote(slug)}/{topic_id}/{post_number}", title=title,
            author=author, handle=f"@{author}" if author else "",
            published=note.time("created_at"), text="", thread=_thread(base, topic_id),
            extra={"topic_id": topic_id, "post_number": post_number, "username": author,
                   "archetype": "private_message" if private else "regular",
                   "topic_title": title}))
    outcome.cursor["notifications"] = newest
    return rows


async def _one_post(api: Api, post_id: int) -> Shape | None:
    """``/posts/{id}.json``, or None when it is gone or hidden from us (deleted, moved to a
    category we cannot see): the notification still becomes an item, without the text."""
    try:
        result = await api.get(f"/posts/{post_id}.json")
    except BudgetExceeded:
        return None
    except ApiError as exc:
        if exc.status in (403, 404, 410):
            return None
        raise
    return Shape(result.data, f"posts/{post_id}.json", LABEL)


def _thread(base: str, topic_id: int | str) -> str:
    return thread_key(f"{base}/t/{topic_id}")


def _post_row(src: SourceConfig, base: str, post: Shape, now: float, *,
              topic: Shape | None = None, title: str = "", blurb: bool = False,
              private: bool = False) -> Row:
    post_id = post.ident("id")
    topic_id = int(post.ident("topic_id"))
    post_number = post.number("post_number")
    username = post.text("username")
    name = post.text("name", "") or username
    topic_title = title or post.text("topic_title", "") or (
        topic.text("title", "") if topic is not None else "")
    slug = post.text("topic_slug", "") or (topic.text("slug", "") if topic is not None
                                           else "") or "topic"
    reply_to = post.data.get("reply_to_post_number")
    parent = reply_to if isinstance(reply_to, int) and not isinstance(reply_to, bool) else (
        1 if post_number > 1 else 0)
    text = post.text("blurb", "") if blurb else None
    return make_row(
        src.id, src.type, f"{topic_id}/{post_number}", fetched=now,
        url=f"{base}/t/{quote(slug)}/{topic_id}/{post_number}",
        title=topic_title if post_number == 1 else f"Re: {topic_title}",
        author=name, handle=f"@{username}", published=post.time("created_at"),
        html="" if blurb else post.text("cooked", ""), text=text, base_url=base,
        thread=_thread(base, topic_id),
        parent_key=f"{topic_id}/{parent}" if parent else "",
        extra={"topic_id": topic_id, "post_number": post_number, "post_id": int(post_id),
               "username": username, "topic_title": topic_title,
               "archetype": "private_message" if private else "regular",
               "category_id": post.data.get("category_id")
               if isinstance(post.data.get("category_id"), int) else None},
    )


# --------------------------------------------------------------------------- writing


def can_send(item: Item, op: str) -> bool:
    """A reply needs the topic; a private message needs the author's username."""
    if op == "private":
        return bool(item.extra.get("username"))
    return bool(item.extra.get("topic_id"))


def marker(entry: OutboxEntry) -> str:
    """The invisible tag that lets a retry recognise its own earlier post."""
    return f"<!-- cm-console:{entry.idempotency_key[:24]} -->"


def request_for(entry: OutboxEntry) -> dict[str, Any]:
    """The exact ``POST /posts.json`` body for an outbox entry (tests compare it)."""
    payload = entry.payload
    ids = payload.get("ids") or {}
    raw = f"{payload.get('text') or ''}\n\n{marker(entry)}"
    if payload.get("op") == "private":
        topic = one_line(ids.get("topic_title") or "", 180)
        title = one_line(payload.get("title") or "", 250) or (
            f"About your post: {topic}" if topic else "About your post")
        return {"title": title, "raw": raw, "target_recipients": str(ids.get("username", "")),
                "archetype": "private_message"}
    body: dict[str, Any] = {"raw": raw, "topic_id": int(ids["topic_id"])}
    number = ids.get("post_number")
    if isinstance(number, int) and number > 1:
        body["reply_to_post_number"] = number
    return body


def send(src: SourceConfig, entry: OutboxEntry, timeout: float) -> dict[str, Any]:
    """Post once: on a retry, find the earlier attempt's post before posting again."""
    label = f"{LABEL} {src.id}"
    try:
        base = _base(src)
        headers = _auth(src, required=True)
    except ApiError as exc:
        raise delivery_error(str(exc)) from None
    body = request_for(entry)
    with send_client(timeout) as client:
        if entry.attempts > 0:
            found = _already_posted(client, base, headers, label, entry, body)
            if found is not None:
                return found
        _, data = send_request(client, "POST", f"{base}/posts.json", label, headers=headers,
                               json_body=body)
    if not isinstance(data, dict) or not isinstance(data.get("id"), int):
        raise delivery_error(f"{label}: the forum accepted the post but its answer has no id")
    return {"id": data["id"], "topic_id": data.get("topic_id"),
            "post_number": data.get("post_number")}


def _already_posted(client: httpx.Client, base: str, headers: dict[str, str], label: str,
                    entry: OutboxEntry, body: dict[str, Any]) -> dict[str, Any] | None:
    """This account's recent topics/replies/messages, checked for our marker. Any failure
    raises DeliveryError: we never post again without knowing the first did not land."""
    username = headers.get("Api-Username", "")
    if not username:
        _, me = send_request(client, "GET", f"{base}/session/current.json", label,
                             headers=headers)
        user = me.get("current_user") if isinstance(me, dict) else None
        username = user.get("username", "") if isinstance(user, dict) else ""
        if not isinstance(username, str) or not username:
            raise delivery_error(f"{label}: cannot tell which account the key belongs to")
    since = entry.created - 300
    tag = marker(entry)
    checked = 0
    for offset in (0, 30, 60):  # user_actions pages hold 30; older than ``since`` stops
        _, data = send_request(client, "GET", f"{base}/user_actions.json", label,
                               headers=headers, params={"username": username,
                                                        "filter": "4,5,12", "offset": offset})
        actions = data.get("user_actions") if isinstance(data, dict) else None
        if not isinstance(actions, list):
            raise delivery_error(f"{label}: unexpected /user_actions.json answer")
        oldest = float("inf")
        for action in actions:
            if not isinstance(action, dict):
                continue
            created = parse_iso(str(action.get("created_at") or "")) or 0.0
            oldest = min(oldest, created)
            if created < since:
                continue
            if "topic_id" in body and action.get("topic_id") != body["topic_id"]:
                continue
            post_id = action.get("post_id")
            if not isinstance(post_id, int) or checked >= 10:
                continue
            checked += 1
            _, post = send_request(client, "GET", f"{base}/posts/{post_id}.json", label,
                                   headers=headers)
            if isinstance(post, dict) and tag in str(post.get("raw") or ""):
                return {"id": post_id, "topic_id": post.get("topic_id"),
                        "post_number": post.get("post_number"), "already": True}
        if len(actions) < 30 or oldest < since:
            break
    return None
