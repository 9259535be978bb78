"""Load and validate the team's shared ``cm-console.yaml`` into one typed :class:`Config`.

Why so strict: one file is shared by a whole team through git, so a typo must fail loudly
at ``check-config`` time, with the file, line and key path, instead of silently doing
nothing at 3 a.m. Every problem is collected (not just the first) so one run lists them all.

YAML is read with PyYAML's *safe* loader; anchors/aliases (and so "billion laughs") and
duplicate keys are refused. Secrets are never written in the file: they are ``${ENV_VAR}``
references resolved when used (:func:`resolve_secret`).
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .keymap import BINDING_IDS, key_problems
from .language import LANGUAGES
from .models import parse_duration, parse_size
from .rules import PRIORITIES, Rule

__all__ = [
    "Config",
    "ConfigError",
    "ConfigIssue",
    "EscalationTarget",
    "LocalSettings",
    "PollConfig",
    "SmtpConfig",
    "SourceConfig",
    "TeamMember",
    "Template",
    "find_config",
    "load_config",
    "load_local",
    "parse_config",
    "resolve_secret",
    "resolve_user",
]

CONFIG_NAME = "cm-console.yaml"
MAX_CONFIG_BYTES = 1_000_000
SOURCE_TYPES = ("rss", "reddit", "hackernews", "discourse", "mastodon", "bluesky")
ROLES = ("agent", "pr", "lead", "specialist", "legal", "product", "admin")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_KEYS = re.compile(r"(token|password|secret|api_?key|app_password)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in the config, located by file, line and key path."""

    file: str
    line: int
    path: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        label = "warning: " if self.severity == "warning" else ""
        return f"{where}: {label}{self.path + ': ' if self.path else ''}{self.message}"


class ConfigError(Exception):
    """The config cannot be used; ``issues`` lists every error found."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass(slots=True)
class SourceConfig:
    """One polled source. ``options`` holds the type-specific keys (instance, token, ...)."""

    id: str
    type: str
    url: str = ""
    name: str = ""
    interval: float = 300.0
    enabled: bool = True
    max_length: int | None = None  # reply length limit override
    sla: float | None = None  # first-response target, seconds
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass(slots=True)
class TeamMember:
    id: str
    name: str
    role: str = "agent"
    email: str = ""


@dataclass(slots=True)
class Template:
    """A scripted response. ``body`` uses ``{placeholders}`` only (see templates.py)."""

    id: str
    title: str
    body: str
    channels: list[str] = field(default_factory=list)  # source types it fits; empty = all
    visibility: str = "public"
    requires: list[str] = field(default_factory=list)
    max_length: int | None = None
    requires_approval: bool = False
    line: int = 0


@dataclass(slots=True)
class EscalationTarget:
    id: str
    name: str
    webhook: str = ""
    email: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 25
    sender: str = "cm-console@localhost"
    username: str = ""
    password: str = ""  # a ${ENV} reference
    starttls: bool = False


@dataclass(slots=True)
class PollConfig:
    """How polling behaves for every source (a source's own ``interval`` wins)."""

    interval: float = 300.0
    timeout: float = 30.0  # overall deadline for one fetch, body included
    max_bytes: int = 10_000_000  # decoded body cap
    concurrency: int = 32
    parse_workers: int = 2
    max_redirects: int = 5
    max_backoff: float = 6 * 3600.0
    max_retry_after: float = 24 * 3600.0


@dataclass(slots=True)
class Config:
    """The whole validated config. ``path`` is the file it came from (None for defaults)."""

    path: Path | None
    store: Path
    sources: list[SourceConfig] = field(default_factory=list)
    team: list[TeamMember] = field(default_factory=list)
    templates: list[Template] = field(default_factory=list)
    escalation_targets: list[EscalationTarget] = field(default_factory=list)
    support_email: str = ""
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    poll: PollConfig = field(default_factory=PollConfig)
    keys: dict[str, str] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    review_roles: list[str] = field(default_factory=list)  # their answers need approval
    approver_roles: list[str] = field(default_factory=lambda: ["lead"])
    undo_window: float = 10.0
    warnings: list[ConfigIssue] = field(default_factory=list)

    def source(self, source_id: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.id == source_id), None)

    def member(self, member_id: str) -> TeamMember | None:
        return next((m for m in self.team if m.id == member_id), None)


# --------------------------------------------------------------------------- YAML with lines


class _StrictLoader(yaml.SafeLoader):
    """Safe loader that refuses anchors and aliases (no shared or exploding structures)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                "while reading the config", None, "aliases (*name) are not allowed",
                event.start_mark,
            )
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(
                "while reading the config", None, "anchors (&name) are not allowed",
                event.start_mark,
            )
        return super().compose_node(parent, index)


class _Reader:
    """Turns a composed YAML node tree into plain values, remembering each path's line."""

    def __init__(self, file: str, loader: _StrictLoader):
        self.file = file
        self.loader = loader
        self.lines: dict[str, int] = {}
        self.issues: list[ConfigIssue] = []

    def value(self, node: yaml.Node, path: str) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self._issue(key_node, path, "keys must be plain names")
                    continue
                key = str(key_node.value)
                if key == "<<":
                    self._issue(key_node, path, "merge keys (<<) are not allowed")
                    continue
                child = _join(path, key) if path else key
                if key in out:
                    self._issue(key_node, child, "duplicate key (an earlier value would be lost)")
                    continue
                out[key] = self.value(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(n, f"{path}[{i}]") for i, n in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _issue(self, node: yaml.Node, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, node.start_mark.line + 1, path, message))


def _compose_fast(text: str, file: str) -> Any:
    """Compose with libyaml (10x faster than the pure-Python composer on a 1000-source file),
    refusing anchors and aliases from its event stream first. Returns the root node, or a
    list of issues."""
    c_loader = yaml.CSafeLoader  # type: ignore[attr-defined]
    for event in yaml.parse(text, Loader=c_loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            what = "aliases (*name)" if isinstance(event, yaml.AliasEvent) else "anchors (&name)"
            return [ConfigIssue(file, event.start_mark.line + 1, "",
                                f"invalid YAML: {what} are not allowed")]
    return yaml.compose(text, Loader=c_loader)


def _read_yaml(text: str, file: str) -> tuple[Any, dict[str, int], list[ConfigIssue]]:
    loader = _StrictLoader(text)
    try:
        if hasattr(yaml, "CSafeLoader"):
            node = _compose_fast(text, file)
            if isinstance(node, list):
                return None, {}, node
        else:
            node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = exc.problem or exc.context or "invalid YAML"
        return None, {}, [ConfigIssue(file, line, "", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, {}, [ConfigIssue(file, 0, "", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    if node is None:
        return {}, {}, []
    reader = _Reader(file, loader)
    try:
        data = reader.value(node, "")
    except yaml.YAMLError as exc:  # e.g. a bad !!tag
        return None, {}, [ConfigIssue(file, 0, "", f"invalid YAML: {exc}")]
    return data, reader.lines, reader.issues


# --------------------------------------------------------------------------- validation


class _Checker:
    """Collects issues while pulling typed values out of plain YAML data."""

    def __init__(self, file: str, lines: dict[str, int]):
        self.file = file
        self.lines = lines
        self.issues: list[ConfigIssue] = []

    def line(self, path: str) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rsplit(".", 1)[0] if "." in path else ""
        return self.lines.get("", 0)

    def error(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, self.line(path), path, message))

    def warn(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, self.line(path), path, message, "warning"))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping of keys, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                extra = f' (did you mean "{hint[0]}"?)' if hint else ""
                self.error(_join(path, key) if path else key, f"unknown key{extra}")
        return value

    def items(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {_kind(value)}")
            return []
        return value

    def string(self, data: dict, key: str, path: str, *, required: bool = False,
               default: str = "") -> str:
        value = data.get(key)
        if value is None:
            if required:
                self.error(_join(path, key), "is required")
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.error(_join(path, key), f"expected text, got {_kind(value)}")
            return default
        return str(value)

    def ident(self, data: dict, key: str, path: str) -> str:
        value = self.string(data, key, path, required=True)
        if value and not _ID.match(value):
            self.error(_join(path, key), f'"{value}" is not a valid id (letters, digits, "_", '
                       '"-", "."; at most 64)')
        return value

    def duration(self, data: dict, key: str, path: str, default: float) -> float:
        if data.get(key) is None:
            return default
        try:
            seconds = parse_duration(data[key])
        except ValueError as exc:
            self.error(_join(path, key) if path else key, str(exc))
            return default
        return seconds

    def integer(self, data: dict, key: str, path: str, default: int | None,
                low: int = 0, high: int = 10**9) -> int | None:
        value = data.get(key)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.error(_join(path, key), f"expected a whole number from {low} to {high}, "
                       f"got {value!r}")
            return default
        return value

    def boolean(self, data: dict, key: str, path: str, default: bool) -> bool:
        value = data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(_join(path, key), f"expected true or false, got {value!r}")
            return default
        return value

    def strings(self, data: dict, key: str, path: str) -> list[str]:
        value = data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(_join(path, key), "expected a list of text values")
            return []
        return list(value)

    def http_url(self, value: str, path: str) -> str:
        if _ENV_REF.fullmatch(value.strip()):
            return value.strip()
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            scheme = parts.scheme if parts and parts.scheme else "none"
            self.error(path, f'expected an http:// or https:// URL, got "{value}" '
                       f"(scheme: {scheme}; local files and other schemes are refused)")
            return ""
        if parts.username or parts.password:
            self.warn(path, "credentials in a URL end up in git; use a ${ENV_VAR} reference")
        return value

    def secrets(self, data: Any, path: str) -> None:
        """Warn about literal-looking secrets anywhere in the file."""
        if isinstance(data, dict):
            for key, value in data.items():
                child = _join(path, key) if path else key
                if isinstance(value, str) and _SECRET_KEYS.search(key) and value and not (
                    _ENV_REF.fullmatch(value.strip())
                ):
                    self.warn(child, "looks like a literal secret; write it as ${ENV_VAR} and "
                              "set the variable outside the shared file")
                else:
                    self.secrets(value, child)
        elif isinstance(data, list):
            for i, value in enumerate(data):
                self.secrets(value, f"{path}[{i}]")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f'"{value}"' if isinstance(value, str) else repr(value)


_TOP_KEYS = ("version", "store", "poll", "sources", "team", "templates", "escalation", "keys",
             "undo_window", "support_email", "smtp", "rules", "approvals")
_SOURCE_COMMON = ("id", "type", "name", "url", "interval", "enabled", "max_length", "sla")
# Type-specific keys; validated loosely here, by each connector when it runs.
_SOURCE_OPTIONS: dict[str, tuple[str, ...]] = {
    "rss": ("headers",),
    "reddit": ("subreddit", "query", "comments"),
    "hackernews": ("query", "tags"),
    "discourse": ("api_key", "api_username", "user_api_key", "categories", "query",
                  "notifications"),
    "mastodon": ("instance", "token", "hashtags", "mentions", "search"),
    "bluesky": ("service", "handle", "app_password", "search", "mentions"),
}


def parse_config(text: str, file: str = CONFIG_NAME, base_dir: Path | None = None) -> Config:
    """Validate config text. Raises :class:`ConfigError` listing every error found."""
    data, lines, issues = _read_yaml(text, file)
    check = _Checker(file, lines)
    check.issues.extend(issues)
    if data is None:
        raise ConfigError(check.issues)
    root = check.mapping(data, "", _TOP_KEYS)
    base = base_dir or Path.cwd()

    version = root.get("version", 1)
    if version != 1:
        check.error("version", f"this cm-console reads config version 1, got {version!r}")

    store_text = check.string(root, "store", "", default="cm-console.db.json") or "x"
    for name in _ENV_REF.findall(store_text):
        if name not in os.environ:  # an empty expansion would point at another store
            check.error("store", f"environment variable {name} is not set")
    store = Path(os.path.expanduser(_expand_env(store_text)))
    if not store.is_absolute():
        store = base / store

    poll_data = check.mapping(root.get("poll"), "poll",
                              ("interval", "timeout", "max_bytes", "concurrency",
                               "parse_workers", "max_redirects", "max_backoff",
                               "max_retry_after"))
    poll = PollConfig()
    poll.interval = check.duration(poll_data, "interval", "poll", poll.interval)
    poll.timeout = check.duration(poll_data, "timeout", "poll", poll.timeout)
    poll.max_backoff = check.duration(poll_data, "max_backoff", "poll", poll.max_backoff)
    poll.max_retry_after = check.duration(poll_data, "max_retry_after", "poll",
                                          poll.max_retry_after)
    if poll_data.get("max_bytes") is not None:
        try:
            poll.max_bytes = parse_size(poll_data["max_bytes"])
        except ValueError as exc:
            check.error("poll.max_bytes", str(exc))
    poll.concurrency = check.integer(poll_data, "concurrency", "poll", 32, 1, 512) or 32
    poll.parse_workers = check.integer(poll_data, "parse_workers", "poll", 2, 0, 64) or 0
    poll.max_redirects = check.integer(poll_data, "max_redirects", "poll", 5, 0, 20) or 0
    if not 1 <= poll.timeout <= 3600:
        check.error("poll.timeout", "expected a deadline between 1s and 1h")

    sources: list[SourceConfig] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(check.items(root.get("sources"), "sources")):
        path = f"sources[{i}]"
        stype = raw.get("type") if isinstance(raw, dict) else None
        extra = _SOURCE_OPTIONS.get(stype, ()) if isinstance(stype, str) else ()
        src = check.mapping(raw, path, _SOURCE_COMMON + extra)
        if not src:
            continue
        sid = check.ident(src, "id", path)
        if sid in seen:
            check.error(f"{path}.id", f'"{sid}" is already used by {seen[sid]}')
        seen[sid] = path
        stype = check.string(src, "type", path, required=True)
        if stype and stype not in SOURCE_TYPES:
            check.error(f"{path}.type", f'unknown source type "{stype}" (known: '
                        f"{', '.join(SOURCE_TYPES)})")
        url = check.string(src, "url", path)
        if stype in ("rss", "discourse") and not url:
            check.error(f"{path}.url", f"is required for type: {stype}")
        if url:
            url = check.http_url(url, f"{path}.url")
        interval = check.duration(src, "interval", path, poll.interval)
        if interval < 10:
            check.error(f"{path}.interval", "must be at least 10s (be kind to servers)")
        options = {k: v for k, v in src.items() if k in extra}
        sources.append(SourceConfig(
            id=sid, type=stype, url=url, name=check.string(src, "name", path),
            interval=interval, enabled=check.boolean(src, "enabled", path, True),
            max_length=check.integer(src, "max_length", path, None, 1, 100_000),
            sla=check.duration(src, "sla", path, 0.0) or None, options=options,
        ))

    team: list[TeamMember] = []
    for i, raw in enumerate(check.items(root.get("team"), "team")):
        path = f"team[{i}]"
        member = check.mapping(raw, path, ("id", "name", "role", "email"))
        if not member:
            continue
        role = check.string(member, "role", path, default="agent")
        if role not in ROLES:
            check.error(f"{path}.role", f'unknown role "{role}" (known: {", ".join(ROLES)})')
        mid = check.ident(member, "id", path)
        team.append(TeamMember(id=mid, name=check.string(member, "name", path, default=mid),
                               role=role, email=check.string(member, "email", path)))

    templates: list[Template] = []
    for i, raw in enumerate(check.items(root.get("templates"), "templates")):
        path = f"templates[{i}]"
        tpl = check.mapping(raw, path, ("id", "title", "body", "channels", "visibility",
                                        "requires", "max_length", "requires_approval"))
        if not tpl:
            continue
        visibility = check.string(tpl, "visibility", path, default="public")
        if visibility not in ("public", "private"):
            check.error(f"{path}.visibility", f'expected public or private, got "{visibility}"')
        channels = check.strings(tpl, "channels", path)
        for ch in channels:
            if ch not in SOURCE_TYPES:
                check.error(f"{path}.channels", f'unknown source type "{ch}"')
        tid = check.ident(tpl, "id", path)
        templates.append(Template(
            id=tid, title=check.string(tpl, "title", path, default=tid),
            body=check.string(tpl, "body", path, required=True), channels=channels,
            visibility=visibility, requires=check.strings(tpl, "requires", path),
            max_length=check.integer(tpl, "max_length", path, None, 1, 100_000),
            requires_approval=check.boolean(tpl, "requires_approval", path, False),
            line=check.line(path),
        ))
    _check_template_placeholders(templates, check)

    esc = check.mapping(root.get("escalation"), "escalation", ("targets",))
    targets: list[EscalationTarget] = []
    for i, raw in enumerate(check.items(esc.get("targets"), "escalation.targets")):
        path = f"escalation.targets[{i}]"
        tgt = check.mapping(raw, path, ("id", "name", "webhook", "email"))
        if not tgt:
            continue
        tid = check.ident(tgt, "id", path)
        given = check.string(tgt, "webhook", path)
        webhook = check.http_url(given, f"{path}.webhook") if given else ""
        emails = check.strings(tgt, "email", path)
        if not given and not emails:  # a refused webhook is reported once, above
            check.error(path, "needs a webhook URL or at least one e-mail address")
        targets.append(EscalationTarget(id=tid, name=check.string(tgt, "name", path, default=tid),
                                        webhook=webhook, email=emails))

    smtp_data = check.mapping(root.get("smtp"), "smtp",
                              ("host", "port", "from", "username", "password", "starttls"))
    smtp = SmtpConfig(
        host=check.string(smtp_data, "host", "smtp", default="localhost"),
        port=check.integer(smtp_data, "port", "smtp", 25, 1, 65535) or 25,
        sender=check.string(smtp_data, "from", "smtp", default="cm-console@localhost"),
        username=check.string(smtp_data, "username", "smtp"),
        password=check.string(smtp_data, "password", "smtp"),
        starttls=check.boolean(smtp_data, "starttls", "smtp", False),
    )

    rules = _parse_rules(check, root.get("rules"), sources, team, targets)

    approvals = check.mapping(root.get("approvals"), "approvals", ("review", "approvers"))
    review_roles = check.strings(approvals, "review", "approvals")
    approver_roles = check.strings(approvals, "approvers", "approvals") or ["lead"]
    for key, roles in (("review", review_roles), ("approvers", approver_roles)):
        for role in roles:
            if role not in ROLES:
                check.error(f"approvals.{key}", f'unknown role "{role}" (known: '
                            f'{", ".join(ROLES)})')

    keys_data = check.mapping(root.get("keys"), "keys", BINDING_IDS)
    keys = {k: str(v) for k, v in keys_data.items() if k in BINDING_IDS and v is not None}
    for binding_id, message, _is_error in key_problems(keys):
        check.error(f"keys.{binding_id}", message)

    undo_window = check.duration(root, "undo_window", "", 10.0)
    if not 0 <= undo_window <= 3600:
        check.error("undo_window", "expected between 0s and 1h (0 turns undo off)")
    support_email = check.string(root, "support_email", "")
    if support_email and not _EMAIL.match(support_email):
        check.error("support_email", f'"{support_email}" is not an e-mail address')

    check.secrets(data, "")
    errors = [i for i in check.issues if i.severity == "error"]
    if errors:
        raise ConfigError(sorted(check.issues, key=lambda i: (i.line, i.path)))
    return Config(
        path=None, store=store, sources=sources, team=team, templates=templates,
        escalation_targets=targets, support_email=support_email,
        smtp=smtp, poll=poll, keys=keys, rules=rules, review_roles=review_roles,
        approver_roles=approver_roles,
        undo_window=undo_window,
        warnings=[i for i in check.issues if i.severity == "warning"],
    )


def _parse_rules(check: _Checker, raw_rules: Any, sources: list[SourceConfig],
                 team: list[TeamMember], targets: list[EscalationTarget]) -> list[Rule]:
    """``rules:``: each has an id, a ``match`` (all must hold) and what it sets."""
    rules: list[Rule] = []
    source_ids = {s.id for s in sources}
    member_ids = {m.id for m in team}
    target_ids = {t.id for t in targets}
    seen: set[str] = set()
    for i, raw in enumerate(check.items(raw_rules, "rules")):
        path = f"rules[{i}]"
        data = check.mapping(raw, path, ("id", "match", "set", "stop"))
        if not data:
            continue
        rid = check.ident(data, "id", path)
        if rid in seen:
            check.error(f"{path}.id", f'"{rid}" is already used by another rule')
        seen.add(rid)
        match = check.mapping(data.get("match"), f"{path}.match",
                              ("source", "type", "words", "regex", "author", "sentiment",
                               "breached", "language"))
        mpath = f"{path}.match"
        rule = Rule(id=rid, line=check.line(path), stop=check.boolean(data, "stop", path, False))
        rule.sources = check.strings(match, "source", mpath)
        for sid in rule.sources:
            if sid not in source_ids:
                check.error(f"{mpath}.source", f'no source "{sid}"')
        rule.types = check.strings(match, "type", mpath)
        for stype in rule.types:
            if stype not in SOURCE_TYPES:
                check.error(f"{mpath}.type", f'unknown source type "{stype}"')
        rule.words = [w for w in check.strings(match, "words", mpath) if w.strip()]
        for pattern in check.strings(match, "regex", mpath):
            try:
                rule.patterns.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                check.error(f"{mpath}.regex", f"invalid regular expression {pattern!r}: {exc}")
        rule.authors = check.strings(match, "author", mpath)
        rule.breached = check.boolean(match, "breached", mpath, False)
        rule.languages = check.strings(match, "language", mpath)
        for code in rule.languages:
            if code not in LANGUAGES:
                check.error(f"{mpath}.language", f'unknown language "{code}" (known: '
                            f'{", ".join(LANGUAGES)})')
        rule.sentiment = check.strings(match, "sentiment", mpath)
        for label in rule.sentiment:
            if label not in ("negative", "neutral", "positive"):
                check.error(f"{mpath}.sentiment", f'expected negative, neutral or positive, '
                            f'got "{label}"')
        actions = check.mapping(data.get("set"), f"{path}.set",
                                ("tags", "priority", "assign", "escalate"))
        spath = f"{path}.set"
        rule.tags = [t.strip().lower() for t in check.strings(actions, "tags", spath)]
        rule.priority = check.string(actions, "priority", spath) or None
        if rule.priority and rule.priority not in PRIORITIES:
            check.error(f"{spath}.priority", f'expected one of {", ".join(PRIORITIES)}, got '
                        f'"{rule.priority}"')
        rule.assign = check.string(actions, "assign", spath) or None
        if rule.assign and rule.assign not in member_ids:
            check.error(f"{spath}.assign", f'no team member "{rule.assign}"')
        rule.escalate = check.string(actions, "escalate", spath) or None
        if rule.escalate and rule.escalate not in target_ids:
            check.error(f"{spath}.escalate", f'no escalation target "{rule.escalate}"')
        if not actions:
            check.error(path, "a rule needs a `set:` (tags, priority, assign or escalate)")
        rules.append(rule)
    return rules


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
TEMPLATE_FIELDS = ("author", "handle", "title", "link", "source", "agent", "agent_id", "case",
                   "date")


def _check_template_placeholders(templates: list[Template], check: _Checker) -> None:
    for i, tpl in enumerate(templates):
        body = tpl.body.replace("{{", "").replace("}}", "")
        for name in _PLACEHOLDER.findall(body):
            if name not in TEMPLATE_FIELDS:
                check.error(f"templates[{i}].body", f'unknown placeholder "{{{name}}}" '
                            f"(known: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})")
        stray = _PLACEHOLDER.sub("", body)
        if "{" in stray or "}" in stray:
            check.error(f"templates[{i}].body", 'unbalanced "{" or "}" (write {{ or }} for a '
                        "literal brace)")
        for name in tpl.requires:
            if name not in TEMPLATE_FIELDS:
                check.error(f"templates[{i}].requires", f'unknown variable "{name}"')


def _expand_env(text: str) -> str:
    return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), text)


def unset_references(path: Path) -> list[ConfigIssue]:
    """Warnings for ``${VAR}`` references in the file whose variable is not set here.

    For ``check-config`` only: a variable may be set on purpose only where it is used (the
    SMTP password on the machine that sends mail), so the other commands stay quiet. But a
    check that says "ok" and then fails at the first escalation is no check at all. The
    YAML scanner finds the values, so comments and quoted '#' are read as YAML reads them.
    """
    try:
        text = path.read_text(encoding="utf-8")
        tokens = list(yaml.scan(text, Loader=yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # load_config reports these
    issues = []
    key, after_key = "", False
    for token in tokens:
        if isinstance(token, yaml.KeyToken):
            after_key = True
            continue
        if not isinstance(token, yaml.ScalarToken):
            after_key = False
            continue
        if after_key:
            key, after_key = token.value, False
            continue
        for match in _ENV_REF.finditer(token.value):
            if match.group(1) not in os.environ:
                issues.append(ConfigIssue(str(path), token.start_mark.line + 1, key,
                                          f"${{{match.group(1)}}} is not set in this "
                                          "environment: whatever uses it will fail until it is",
                                          "warning"))
    return issues


def resolve_secret(value: str, what: str) -> str:
    """Resolve a ``${ENV_VAR}`` reference at the moment it is needed.

    Raises ValueError naming the variable when it is unset, so the error shows up on the one
    source that needs it instead of stopping the whole app.
    """
    match = _ENV_REF.fullmatch(value.strip())
    if not match:
        return value
    name = match.group(1)
    if name not in os.environ:
        raise ValueError(f"{what}: environment variable {name} is not set")
    return os.environ[name]


def find_config(cli_path: str | None = None) -> Path | None:
    """``--config``, then ``$CM_CONSOLE_CONFIG``, then ``./cm-console.yaml``, then XDG."""
    if cli_path:
        return Path(cli_path)
    if os.environ.get("CM_CONSOLE_CONFIG"):
        return Path(os.environ["CM_CONSOLE_CONFIG"])
    local = Path.cwd() / CONFIG_NAME
    if local.exists():
        return local
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    candidate = xdg / "cm-console" / CONFIG_NAME
    return candidate if candidate.exists() else None


def load_config(path: Path) -> Config:
    """Read and validate a config file; a missing or unreadable file is a ConfigError too."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError([ConfigIssue(name, 0, "", f"file is {size} bytes; the limit is "
                                           f"{MAX_CONFIG_BYTES}")])
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigIssue(name, 0, "", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(name, 0, "", f"not UTF-8 text ({exc.reason} at byte "
                                       f"{exc.start})")]) from None
    config = parse_config(text, name, path.resolve().parent)
    config.path = path
    return config


@dataclass(slots=True)
class LocalSettings:
    """One person's settings, never shared: who they are, their keys, their theme."""

    path: Path | None = None
    user: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    theme: str = ""


LOCAL_NAME = "local.yaml"


def local_settings_path() -> Path:
    """``$CM_CONSOLE_LOCAL``, else ``$XDG_CONFIG_HOME/cm-console/local.yaml``."""
    if os.environ.get("CM_CONSOLE_LOCAL"):
        return Path(os.environ["CM_CONSOLE_LOCAL"])
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return xdg / "cm-console" / LOCAL_NAME


def load_local(path: Path | None = None) -> LocalSettings:
    """Read the personal settings file (missing is fine: defaults). ConfigError on mistakes,
    with the same file:line: key messages as the shared config."""
    path = path or local_settings_path()
    if not path.exists():
        return LocalSettings()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), 0, "", f"cannot read: {exc}")]) from None
    data, lines, issues = _read_yaml(text, str(path))
    check = _Checker(str(path), lines)
    check.issues.extend(issues)
    root = check.mapping(data, "", ("user", "keys", "theme")) if data is not None else {}
    keys = check.mapping(root.get("keys"), "keys", BINDING_IDS)
    settings = LocalSettings(path=path, user=check.string(root, "user", ""),
                             keys={k: str(v) for k, v in keys.items()
                                   if k in BINDING_IDS and v is not None},
                             theme=check.string(root, "theme", ""))
    if settings.user and not _ID.match(settings.user):
        check.error("user", f'"{settings.user}" is not a valid id')
    # Names only: whether a personal key clashes depends on the team's keys, read elsewhere.
    for binding_id, message, _is_error in key_problems(settings.keys, clashes=False):
        check.error(f"keys.{binding_id}", message)
    if any(i.severity == "error" for i in check.issues):
        raise ConfigError(check.issues)
    return settings


def resolve_user(cli_as: str | None, local: LocalSettings | None = None) -> str:
    """Who am I: ``--as``, then ``$CM_CONSOLE_USER``, then the personal settings file, then
    the OS user name."""
    if cli_as:
        return cli_as
    if os.environ.get("CM_CONSOLE_USER"):
        return os.environ["CM_CONSOLE_USER"]
    if local is not None and local.user:
        return local.user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
