"""Reports for leadership: what came in, how fast we answered, what went to PR. No UI.

Everything is computed from the store's items and its append-only event log, so figures stay
right after undo (undone events are skipped), reassignments and re-opens. One pass over the
items and one over the events: a 100,000-item store reports in a few seconds.

First-response time is measured from when the post was published to the first answering
action (reply, route private, escalate) that was not undone.
"""

from __future__ import annotations

import csv
import html
import io
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from .config import Config
from .models import Event, Item
from .sanitize import one_line
from .sentiment import label as sentiment_label
from .store import Store

__all__ = ["ANSWERS", "CSV_COLUMNS", "Report", "build_report", "digest_text", "render"]

ANSWERS = frozenset({"reply", "route_private", "escalate"})
CSV_COLUMNS = ("id", "source", "type", "published", "author", "title", "url", "state", "tags",
               "assignee", "priority", "first_response_at", "first_response_seconds",
               "first_response_by", "escalated_to", "routed_private", "sla_seconds",
               "sla_breached")


@dataclass(slots=True)
class Report:
    """The figures (``data``, JSON-ready) and one row per item for CSV."""

    data: dict[str, Any]
    rows: list[dict[str, Any]]


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _times(values: list[float]) -> dict[str, Any]:
    return {"count": len(values),
            "median_seconds": statistics.median(values) if values else None,
            "p90_seconds": _percentile(values, 0.9)}


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def _every_day(counts: Counter[str]) -> dict[str, int]:
    """Counts per day from the first to the last, quiet days included as 0: a chart that
    skips them draws a busy Monday next to a busy Wednesday as if they were adjacent."""
    if not counts:
        return {}
    from datetime import date, timedelta

    first, last = date.fromisoformat(min(counts)), date.fromisoformat(max(counts))
    out = {}
    while first <= last:
        key = first.isoformat()
        out[key] = counts.get(key, 0)
        first += timedelta(days=1)
    return out


def build_report(store: Store, config: Config, start: float, end: float,
                 now: float | None = None) -> Report:
    """Figures for items published in ``[start, end)`` and actions taken in that window."""
    now = time.time() if now is None else now
    events = store.events()
    undone = {e.data.get("undoes") for e in events if e.action == "undo"}
    live = [e for e in events if e.id not in undone and e.action != "undo"]

    first_answer: dict[str, Event] = {}
    escalations: dict[str, list[Event]] = defaultdict(list)
    routed: set[str] = set()
    for event in live:
        if event.action in ANSWERS and event.item not in first_answer:
            first_answer[event.item] = event
        if event.action == "escalate":
            escalations[event.item].append(event)
        if event.action == "route_private":
            routed.add(event.item)

    ids = [i for i in store.ordered_ids()]
    items = [i for i in store.items(ids) if start <= i.published < end]
    sla_by_source = {s.id: s.sla for s in config.sources if s.sla}

    by_source: Counter[str] = Counter()
    by_day: Counter[str] = Counter()
    by_tag: Counter[str] = Counter()
    by_sentiment: Counter[str] = Counter()
    by_state: Counter[str] = Counter()
    authors: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    thread_titles: dict[str, str] = {}
    response: list[float] = []
    response_source: dict[str, list[float]] = defaultdict(list)
    response_agent: dict[str, list[float]] = defaultdict(list)
    breaches: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    for item in items:
        by_source[item.source] += 1
        by_day[_day(item.published)] += 1
        by_state[item.state] += 1
        for tag in item.tags:
            by_tag[tag] += 1
        by_sentiment[_sentiment(item)] += 1
        if item.author:
            authors[item.author] += 1
        if item.thread:
            threads[item.thread] += 1
            thread_titles.setdefault(item.thread, item.title)
        answer = first_answer.get(item.id)
        seconds = max(0.0, answer.ts - item.published) if answer else None
        if seconds is not None and answer is not None:
            response.append(seconds)
            response_source[item.source].append(seconds)
            response_agent[answer.actor].append(seconds)
        sla = sla_by_source.get(item.source)
        breached = False
        if sla:
            waited = seconds if seconds is not None else now - item.published
            breached = waited > sla
            if breached:
                breaches.append({"id": item.id, "source": item.source, "title": item.title,
                                 "waited_seconds": waited, "sla_seconds": sla,
                                 "answered": answer is not None})
        targets = [e.data.get("target", "") for e in escalations.get(item.id, ())]
        rows.append({
            "id": item.id, "source": item.source, "type": item.source_type,
            "published": _iso(item.published), "author": item.author, "title": item.title,
            "url": item.url, "state": item.state, "tags": " ".join(item.tags),
            "assignee": item.assignee or "",
            "priority": item.priority,
            "first_response_at": _iso(answer.ts) if answer else "",
            "first_response_seconds": round(seconds, 1) if seconds is not None else "",
            "first_response_by": answer.actor if answer else "",
            "escalated_to": " ".join(targets), "routed_private": item.id in routed,
            "sla_seconds": sla or "", "sla_breached": breached,
        })

    in_window = [e for e in live if start <= e.ts < end]
    esc_targets: Counter[str] = Counter()
    esc_outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for event in in_window:
        if event.action == "escalate":
            target = str(event.data.get("target", ""))
            esc_targets[target] += 1
            current = store.get_item(event.item)
            esc_outcomes[target][current.state if current else "missing"] += 1
    agents: dict[str, Counter[str]] = defaultdict(Counter)
    for event in in_window:
        if event.actor and event.action not in ("delivered", "delivery_failed", "wake"):
            agents[event.actor][event.action] += 1

    data = {
        "period": {"from": _iso(start), "to": _iso(end), "generated": _iso(now)},
        "items": len(items),
        "volume": {"by_source": dict(by_source.most_common()),
                   "by_day": _every_day(by_day),
                   "by_tag": dict(by_tag.most_common()),
                   "by_sentiment": dict(by_sentiment.most_common()),
                   "by_state": dict(by_state.most_common())},
        "first_response": {
            **_times(response), "unanswered": len(items) - len(response),
            "by_source": {k: _times(v) for k, v in sorted(response_source.items())},
            "by_agent": {k: _times(v) for k, v in sorted(response_agent.items())},
        },
        "sla": {"breaches": len(breaches),
                "items": sorted(breaches, key=lambda b: -b["waited_seconds"])[:50]},
        "escalations": {"total": sum(esc_targets.values()),
                        "by_target": dict(esc_targets.most_common()),
                        "outcomes": {k: dict(v) for k, v in sorted(esc_outcomes.items())}},
        "routed_private": sum(1 for e in in_window if e.action == "route_private"),
        "top_threads": [{"thread": k, "title": thread_titles.get(k, ""), "items": n}
                        for k, n in threads.most_common(10) if n > 1],
        "top_authors": [{"author": a, "items": n} for a, n in authors.most_common(10)],
        "agents": {k: dict(v) for k, v in sorted(agents.items())},
    }
    return Report(data, rows)


def _sentiment(item: Item) -> str:
    return sentiment_label(item.extra.get("sentiment_score"))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def human(seconds: float | None) -> str:
    """``3h 12m`` style durations for people."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


# --------------------------------------------------------------------------- rendering


def render(report: Report, fmt: str) -> str:
    """The report as ``md``, ``html``, ``csv`` or ``json`` text."""
    if fmt == "json":
        import orjson

        return orjson.dumps(report.data, option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        writer.writerows([_csv_safe(row[c]) for c in CSV_COLUMNS] for row in report.rows)
        return out.getvalue()
    if fmt == "html":
        return _html(report.data)
    return _markdown(report.data)


def _csv_safe(value: Any) -> Any:
    """Defuse spreadsheet formulas in strangers' text (=, +, -, @ at the start of a cell)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _md(value: Any) -> str:
    text = one_line(value, 120)
    for ch in "\\|*_`[]<>#":
        text = text.replace(ch, "\\" + ch)
    return text


def _markdown(d: dict[str, Any]) -> str:
    fr = d["first_response"]
    lines = [
        f"# Community report {d['period']['from'][:10]} – {d['period']['to'][:10]}",
        "",
        f"- **{d['items']}** items; first response median **{human(fr['median_seconds'])}**, "
        f"p90 **{human(fr['p90_seconds'])}**; {fr['unanswered']} unanswered",
        f"- **{d['sla']['breaches']}** SLA breaches; **{d['escalations']['total']}** "
        f"escalations; **{d['routed_private']}** routed private",
        "",
        "## Volume by source", "", "| source | items |", "|---|---:|",
        *[f"| {_md(k)} | {v} |" for k, v in d["volume"]["by_source"].items()],
        "", "## Volume by day", "", "| day | items |", "|---|---:|",
        *[f"| {k} | {v} |" for k, v in d["volume"]["by_day"].items()],
        "", "## Sentiment", "", "| sentiment | items |", "|---|---:|",
        *[f"| {k} | {v} |" for k, v in d["volume"]["by_sentiment"].items()],
    ]
    if d["volume"]["by_tag"]:
        lines += ["", "## Tags", "", "| tag | items |", "|---|---:|",
                  *[f"| {_md(k)} | {v} |" for k, v in d["volume"]["by_tag"].items()]]
    lines += ["", "## First response", "", "| | answered | median | p90 |", "|---|---:|---:|---:|"]
    for group in ("by_source", "by_agent"):
        for key, t in fr[group].items():
            lines.append(f"| {group[3:]} {_md(key)} | {t['count']} | {human(t['median_seconds'])}"
                         f" | {human(t['p90_seconds'])} |")
    if d["escalations"]["by_target"]:
        lines += ["", "## Escalations", "", "| target | escalated | now |", "|---|---:|---|"]
        for target, n in d["escalations"]["by_target"].items():
            now = ", ".join(f"{s} {c}" for s, c in d["escalations"]["outcomes"].get(target,
                                                                                    {}).items())
            lines.append(f"| {_md(target)} | {n} | {now} |")
    if d["sla"]["items"]:
        lines += ["", "## SLA breaches", "", "| item | source | waited | target |",
                  "|---|---|---:|---:|"]
        lines += [f"| {_md(b['title'])} | {_md(b['source'])} | {human(b['waited_seconds'])} | "
                  f"{human(b['sla_seconds'])} |" for b in d["sla"]["items"][:20]]
    if d["top_threads"]:
        lines += ["", "## Busiest threads", ""]
        lines += [f"- {_md(t['title'])} ({t['items']} items)" for t in d["top_threads"]]
    lines += ["", "## Most active authors", ""]
    lines += [f"- {_md(a['author'])}: {a['items']}" for a in d["top_authors"]]
    if d["agents"]:
        lines += ["", "## Team activity", "", "| agent | actions |", "|---|---|"]
        lines += [f"| {_md(a)} | " + ", ".join(f"{k} {v}" for k, v in sorted(acts.items()))
                  + " |" for a, acts in d["agents"].items()]
    return "\n".join(lines) + "\n"


def _bars(values: dict[str, int], width: int = 520, bar: int = 18) -> str:
    """A horizontal bar chart as inline SVG (no scripts, no external files)."""
    if not values:
        return "<p><em>nothing in this period</em></p>"
    peak = max(values.values()) or 1
    height = bar * len(values) + 4
    parts = [f'<svg width="{width}" height="{height}" role="img" '
             'xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value) in enumerate(values.items()):
        y = i * bar + 2
        length = int((width - 220) * value / peak)
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{html.escape(one_line(label, 28))}'
                     "</text>")
        parts.append(f'<rect x="180" y="{y}" width="{max(length, 1)}" height="{bar - 4}" '
                     'fill="#4f7cac"/>')
        parts.append(f'<text x="{184 + length}" y="{y + 13}" font-size="12">{value}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _html(d: dict[str, Any]) -> str:
    fr = d["first_response"]
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(g[3:])} {esc(one_line(k, 60))}</td><td>{t['count']}</td>"
        f"<td>{human(t['median_seconds'])}</td><td>{human(t['p90_seconds'])}</td></tr>"
        for g in ("by_source", "by_agent") for k, t in fr[g].items())
    breaches = "".join(
        f"<tr><td>{esc(one_line(b['title'], 80))}</td><td>{esc(b['source'])}</td>"
        f"<td>{human(b['waited_seconds'])}</td><td>{human(b['sla_seconds'])}</td></tr>"
        for b in d["sla"]["items"][:20])
    authors = "".join(f"<li>{esc(one_line(a['author'], 80))}: {a['items']}</li>"
                      for a in d["top_authors"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Community report {esc(d['period']['from'][:10])} – {esc(d['period']['to'][:10])}</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;max-width:900px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}
td,th{{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}}
.kpi{{display:inline-block;margin:0 2em 1em 0}}.kpi b{{font-size:1.6em;display:block}}</style>
</head><body>
<h1>Community report</h1>
<p>{esc(d['period']['from'])} – {esc(d['period']['to'])}</p>
<div class="kpi"><b>{d['items']}</b>items</div>
<div class="kpi"><b>{human(fr['median_seconds'])}</b>median first response</div>
<div class="kpi"><b>{human(fr['p90_seconds'])}</b>p90 first response</div>
<div class="kpi"><b>{d['sla']['breaches']}</b>SLA breaches</div>
<div class="kpi"><b>{d['escalations']['total']}</b>escalations</div>
<div class="kpi"><b>{d['routed_private']}</b>routed private</div>
<h2>Volume by day</h2>{_bars(d['volume']['by_day'])}
<h2>Volume by source</h2>{_bars(d['volume']['by_source'])}
<h2>Sentiment</h2>{_bars(d['volume']['by_sentiment'])}
<h2>Tags</h2>{_bars(d['volume']['by_tag'])}
<h2>Escalations by target</h2>{_bars(d['escalations']['by_target'])}
<h2>First response</h2><table><tr><th></th><th>answered</th><th>median</th><th>p90</th></tr>
{rows}</table>
<h2>SLA breaches</h2><table><tr><th>item</th><th>source</th><th>waited</th><th>target</th></tr>
{breaches}</table>
<h2>Most active authors</h2><ul>{authors}</ul>
</body></html>
"""


def digest_text(store: Store, config: Config, now: float | None = None) -> str:
    """A short daily summary: what came in, what waits, what breached, what went up."""
    now = time.time() if now is None else now
    report = build_report(store, config, now - 86400, now + 1, now)
    d = report.data
    waiting = store.items(store.item_ids(states=["new", "open"]))
    oldest = min((i.published for i in waiting), default=None)
    lines = [
        f"cm-console digest {time.strftime('%Y-%m-%d', time.localtime(now))}: {d['items']} in, "
        f"{len(waiting)} waiting",
        "",
        "In the last 24 hours: " + (", ".join(f"{k} {v}" for k, v in
                                            d["volume"]["by_source"].items()) or "nothing"),
        f"Waiting for an answer: {len(waiting)}"
        + (f" (oldest {human(now - oldest)} old)" if oldest else ""),
        f"First response: median {human(d['first_response']['median_seconds'])}, "
        f"p90 {human(d['first_response']['p90_seconds'])}",
        f"SLA breaches among the last 24 hours' posts: {d['sla']['breaches']}",
    ]
    lines += [f"  - {one_line(b['title'], 70)} ({b['source']}, waited "
              f"{human(b['waited_seconds'])})" for b in d["sla"]["items"][:5]]
    targets = ", ".join(f"{k} {v}" for k, v in d["escalations"]["by_target"].items())
    lines.append(f"Escalated: {d['escalations']['total']}" + (f" ({targets})" if targets else ""))
    return "\n".join(lines) + "\n"
