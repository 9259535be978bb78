"""Routing rules: tag, prioritise, assign or flag new items for escalation. No UI.

Rules come from the shared config and run on every new item, in order; every condition of
a rule must hold for it to match (conditions list alternatives: ``words: [refund, charged]``
matches either). Each match says *why* (which word, which pattern), so ``cm-console explain``
and ``rules test`` can show a team what a rule really does before and after they change it.

Patterns are the team's (trusted) but the text they run on is a stranger's: matching looks at
the first 4,000 characters only, which bounds what a badly written regex can cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .models import Item
from .sentiment import label as sentiment_label

__all__ = ["Match", "Rule", "RuleResult", "apply_rules", "evaluate", "sentiment_label"]

MATCH_TEXT_LIMIT = 4000
PRIORITIES = ("low", "normal", "high", "urgent")


@dataclass(slots=True)
class Rule:
    """One rule. Empty condition lists mean "any"."""

    id: str
    sources: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    patterns: list[re.Pattern[str]] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    sentiment: list[str] = field(default_factory=list)  # negative / neutral / positive
    breached: bool = False  # only items past their source's first-response SLA (sla.py)
    languages: list[str] = field(default_factory=list)  # ISO codes guessed by language.py
    tags: list[str] = field(default_factory=list)
    priority: str | None = None
    assign: str | None = None
    escalate: str | None = None  # flag for escalation to this target (a person confirms)
    stop: bool = False  # later rules do not run after this one matched
    line: int = 0


@dataclass(slots=True)
class Match:
    rule: Rule
    reasons: list[str]


@dataclass(slots=True)
class RuleResult:
    """What the rules would do to one item: field changes and the matches behind them."""

    changes: dict[str, Any]
    matches: list[Match]


def _words_re(words: list[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


_WORDS_CACHE: dict[tuple[str, ...], re.Pattern[str]] = {}


def _match_one(rule: Rule, item: Item, text: str) -> tuple[bool, list[str]]:
    """(matched, reasons): the reasons it matches, or the one condition that failed."""
    reasons: list[str] = []
    if rule.sources:
        if item.source not in rule.sources:
            return False, [f"source is {item.source}, not {' or '.join(rule.sources)}"]
        reasons.append(f"source is {item.source}")
    if rule.types:
        if item.source_type not in rule.types:
            return False, [f"type is {item.source_type}, not {' or '.join(rule.types)}"]
        reasons.append(f"type is {item.source_type}")
    if rule.authors:
        names = (item.author.casefold(), item.author_handle.casefold())
        hit = next((a for a in rule.authors if a.casefold() in names), None)
        if hit is None:
            return False, ["author is none of " + ", ".join(rule.authors)]
        reasons.append(f"author is {hit}")
    if rule.sentiment:
        label = sentiment_label(item.extra.get("sentiment_score"))
        if label not in rule.sentiment:
            return False, [f"sentiment is {label}, not {' or '.join(rule.sentiment)}"]
        reasons.append(f"sentiment is {label}")
    if rule.languages:
        found = item.extra.get("language", "")
        if found not in rule.languages:
            return False, [f"language is {found or 'unknown'}, not "
                           f"{' or '.join(rule.languages)}"]
        reasons.append(f"language is {found}")
    if rule.breached:
        if not item.extra.get("breached"):
            return False, ["not past its first-response SLA"]
        reasons.append("past its first-response SLA")
    haystack = text[:MATCH_TEXT_LIMIT]
    if rule.words:
        key = tuple(rule.words)
        pattern = _WORDS_CACHE.get(key)
        if pattern is None:
            pattern = _WORDS_CACHE[key] = _words_re(rule.words)
        found = pattern.search(haystack)
        if found is None:
            return False, ["mentions none of " + ", ".join(f'"{w}"' for w in rule.words)]
        reasons.append(f'mentions "{found.group(0)}"')
    for compiled in rule.patterns:
        found = compiled.search(haystack)
        if found is None:
            return False, [f"does not match /{compiled.pattern}/"]
        reasons.append(f'matches /{compiled.pattern}/ at "{found.group(0)[:60]}"')
    return True, reasons or ["matches every item (no conditions)"]


def match_text(item: Item, body: str = "") -> str:
    """What word and pattern conditions look at: title, summary and body."""
    return f"{item.title}\n{item.summary}\n{body}"


def evaluate(rules: list[Rule], item: Item, text: str) -> list[tuple[Rule, bool, list[str]]]:
    """Every rule: matched or not, and why (honouring ``stop``)."""
    out: list[tuple[Rule, bool, list[str]]] = []
    stopped_by = ""
    for rule in rules:
        if stopped_by:
            out.append((rule, False, [f"not run: rule {stopped_by} matched and stops"]))
            continue
        matched, reasons = _match_one(rule, item, text)
        out.append((rule, matched, reasons))
        if matched and rule.stop:
            stopped_by = rule.id
    return out


def apply_rules(rules: list[Rule], item: Item, text: str) -> RuleResult:
    """The field changes the matching rules make, in order (a later rule wins a field)."""
    tags = list(item.tags)
    changes: dict[str, Any] = {}
    matches: list[Match] = []
    for rule, matched, reasons in evaluate(rules, item, text):
        if not matched:
            continue
        matches.append(Match(rule, reasons))
        for tag in rule.tags:
            if tag not in tags:
                tags.append(tag)
        if rule.priority:
            changes["priority"] = rule.priority
        if rule.assign:
            changes["assignee"] = rule.assign
        if rule.escalate:
            changes["extra"] = {**item.extra, **changes.get("extra", {}),
                                "escalate_to": rule.escalate}
    if tags != item.tags:
        changes["tags"] = tags
    if matches:
        extra = changes.get("extra", dict(item.extra))
        extra["rules"] = [m.rule.id for m in matches]
        changes["extra"] = extra
    return RuleResult(changes, matches)
