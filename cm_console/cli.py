"""Command line: argument parsing and printing only; every command calls the core.

Exit codes (all commands):
  0  success
  1  done, but something failed (a source errored, an item was not found; check-config:
     the config is invalid)
  2  usage error, or no usable config (missing or invalid)
  3  the store cannot be opened (locked, damaged: see --recover)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import __version__
from .config import (
    Config,
    ConfigError,
    find_config,
    load_config,
    load_local,
    resolve_user,
    unset_references,
)
from .models import STATES, Item
from .sanitize import one_line, safe_text
from .store import Store, StoreError

if TYPE_CHECKING:
    # The poller brings the HTTP stack (~90 ms of imports): only `poll` loads it.
    from .poller import CycleReport, SourceResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def _common(suppress: bool) -> argparse.ArgumentParser:
    """--config/--as/--recover, accepted before or after the command."""
    default = {"default": argparse.SUPPRESS} if suppress else {}
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", **default,
                        help="config file (default: $CM_CONSOLE_CONFIG, ./cm-console.yaml, "
                             "$XDG_CONFIG_HOME/cm-console/cm-console.yaml)")
    common.add_argument("--as", dest="actor", metavar="ID", **default,
                        help="who you are (default: $CM_CONSOLE_USER, your local.yaml, then "
                             "your OS user name)")
    common.add_argument("--recover", action="store_true", **default,
                        help="if the store is damaged, restore its last good copy")
    return common


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(parents=[_common(False)],
        prog="cm-console",
        description="A keyboard-driven console for community managers. Without a command it "
                    "opens the inbox; `cm-console demo` opens it on bundled sample data.",
        epilog="Exit codes: 0 ok; 1 partly failed (a source errored, item not found; "
               "check-config: invalid config); 2 usage error, no config or an invalid one; "
               "3 store locked or damaged.",
    )
    p.add_argument("--version", action="version", version=f"cm-console {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    # Every command also takes the common options after its name (argparse's SUPPRESS keeps
    # a value given before the command from being reset by the subparser's default).
    common = _common(True)
    real_add = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return real_add(name, parents=[common, *kwargs.pop("parents", [])], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    poll = sub.add_parser("poll", help="poll sources (continuously, or --once)")
    poll.add_argument("--once", action="store_true", help="poll every source once and exit")
    poll.add_argument("--due", action="store_true",
                      help="only sources whose interval has passed (for cron)")
    poll.add_argument("--source", action="append", metavar="ID", help="only this source")
    poll.add_argument("--json", action="store_true", help="one JSON object per source")

    items = sub.add_parser("items", help="list items, newest first")
    items.add_argument("--state", choices=STATES, action="append")
    items.add_argument("--source", metavar="ID")
    items.add_argument("--tag")
    items.add_argument("--search", metavar="TEXT",
                       help="words that must all appear in the title, author or summary")
    items.add_argument("--limit", type=_count_arg, default=50, metavar="N",
                       help="at most N items (0: all; default 50)")
    items.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="one item with its body and history")
    show.add_argument("id", help="item id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true")

    sources = sub.add_parser("sources", help="each source's last poll, status and error")
    sources.add_argument("--json", action="store_true")

    sub.add_parser("check-config", help="validate the config; exit 1 listing every error")

    opml = sub.add_parser("opml", help="import/export RSS sources as OPML")
    opml_sub = opml.add_subparsers(dest="opml_command", metavar="import|export", required=True)
    imp = opml_sub.add_parser("import", help="add the OPML file's feeds to the config")
    imp.add_argument("file")
    exp = opml_sub.add_parser("export", help="write the config's RSS sources as OPML")
    exp.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    demo = sub.add_parser("demo", help="open the console on bundled sample data (offline)")
    demo.add_argument("--headless", action="store_true",
                      help="poll the demo sources and print the inbox instead of the TUI")

    reply = sub.add_parser("reply", help="answer an item with a scripted response")
    reply.add_argument("id")
    reply.add_argument("--template", "-t", metavar="T", help="template id")
    reply.add_argument("--text", help="the reply text instead of (or after editing) a template")
    reply.add_argument("--dry-run", action="store_true", help="print the reply; change nothing")
    reply.add_argument("--force", action="store_true",
                       help="answer even if the post was already answered or is claimed")

    private = sub.add_parser("route-private",
                             help="acknowledge publicly, continue in a private channel")
    private.add_argument("id")
    private.add_argument("--public", metavar="T", help="public template (default: the first "
                         "public one that fits)")
    private.add_argument("--private", metavar="T", help="private template (default: the first "
                         "private one that fits)")
    private.add_argument("--dry-run", action="store_true")

    esc = sub.add_parser("escalate", help="send an item to PR, legal, a specialist...")
    esc.add_argument("id")
    esc.add_argument("--to", required=True, metavar="TARGET", help="escalation target id")
    esc.add_argument("--reason", required=True)
    esc.add_argument("--priority", default="normal", choices=("low", "normal", "high", "urgent"))

    outbox = sub.add_parser("outbox", help="pending and failed deliveries; retry or send now")
    outbox.add_argument("--all", action="store_true", help="include delivered and cancelled")
    outbox.add_argument("--retry", nargs="*", metavar="ID",
                        help="make failed entries (or these) due again")
    outbox.add_argument("--deliver", action="store_true", help="send what is due now")
    outbox.add_argument("--cancel", nargs="+", metavar="ID",
                        help="cancel these entries, or stop retrying them if they failed")
    outbox.add_argument("--json", action="store_true")

    log = sub.add_parser("log", help="the audit log: who did what, when")
    log.add_argument("--item", metavar="ID")
    log.add_argument("--limit", type=_count_arg, default=100, metavar="N",
                     help="newest N (0: all)")
    log.add_argument("--json", action="store_true")

    report = sub.add_parser("report", help="volume, response times, SLA, escalations")
    report.add_argument("--since", metavar="DURATION", help="e.g. 7d, 24h (default: 7d)")
    report.add_argument("--from", dest="start", metavar="DATE", help="YYYY-MM-DD (local)")
    report.add_argument("--to", dest="end", metavar="DATE", help="YYYY-MM-DD, exclusive")
    report.add_argument("--format", default="md", choices=("md", "html", "csv", "json"))
    report.add_argument("-o", "--output", metavar="FILE")

    digest = sub.add_parser("digest", help="a short daily summary (print or e-mail)")
    digest.add_argument("--email", nargs="*", metavar="ADDRESS",
                        help="send it (default: every team member with an e-mail)")

    approvals = sub.add_parser("approvals", help="answers waiting for a reviewer")
    approvals.add_argument("--approve", metavar="ID", help="send this answer")
    approvals.add_argument("--reject", metavar="ID", help="turn this answer down")
    approvals.add_argument("--note", default="", help="why (with --reject)")
    approvals.add_argument("--force", action="store_true",
                           help="approve even if the post was answered since")
    approvals.add_argument("--json", action="store_true")

    rules = sub.add_parser("rules", help="routing rules: replay them over stored items")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="test", required=True)
    rules_test = rules_sub.add_parser("test", help="what the config's rules would change now")
    rules_test.add_argument("--since", default="30d", metavar="DURATION")
    rules_test.add_argument("--json", action="store_true")

    explain = sub.add_parser("explain", help="which rules match an item, and why")
    explain.add_argument("id")

    state = sub.add_parser("mark", help="set an item's state (done, open, ...)")
    state.add_argument("id")
    state.add_argument("state", choices=STATES)

    return p


def entry() -> None:
    """The ``cm-console`` command: :func:`main`, then a quick exit.

    ``gc.freeze()`` first moves every object to the permanent generation, so the collection
    the interpreter runs at shutdown has nothing to scan: measured 30-50 ms of a 0.3 s warm
    poll. Nothing relies on that collection: the store commits (fsynced) and closes its
    files inside main, and the HTTP sessions close with their event loop.
    """
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # `cm-console items | head`: the reader left; that is fine
        _silence_stdout()
        code = EXIT_OK
    gc.freeze()
    sys.exit(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's own flush at exit cannot fail
    again on the closed pipe and print "Exception ignored" to the user."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _count_arg(value: str) -> int:
    """An argparse type: a whole number of at least 0 (``--limit -1`` is a typo, not "all
    but the last")."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {n}")
    return n


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except CliError as exc:
        print(f"cm-console: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"cm-console: {exc}", file=sys.stderr)
        return EXIT_STORE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `cm-console items | head`: the reader left; that is fine
        _silence_stdout()
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(headless=args.headless, actor=resolve_user(args.actor, load_local()))
    if args.command == "check-config":
        return cmd_check_config(args)
    config = _config(args)
    if args.command == "opml":
        from . import opml

        if args.opml_command == "import":
            try:
                added = opml.import_into_config(config, Path(args.file))
            except (OSError, ValueError) as exc:  # unreadable file, not OPML, a DTD...
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise CliError(f"cannot import {args.file}: {detail}") from None
            print(f"added {len(added)} source(s): {', '.join(added) or '-'}")
            return EXIT_OK
        text = opml.export_opml(config)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return EXIT_OK
    store = open_store(config, recover=args.recover)
    local = load_local()
    actor = resolve_user(args.actor, local)
    acting = args.command in ("mark", "reply", "route-private", "escalate") or (
        args.command == "approvals" and (getattr(args, "approve", None)
                                         or getattr(args, "reject", None)))
    if config.team and config.member(actor) is None and acting:  # (the TUI says it)
        # Replies are signed and the audit log is written with this name: say so once.
        known = ", ".join(m.id for m in config.team)
        print(f'cm-console: you are "{actor}", who is not in the config\'s team ({known}); '
              "pass --as ID or set CM_CONSOLE_USER", file=sys.stderr)
    if args.command is None:
        from .app import run_app

        return run_app(config, store, actor=actor)
    handler = {"poll": cmd_poll, "items": cmd_items, "show": cmd_show, "sources": cmd_sources,
               "mark": cmd_mark, "reply": cmd_reply, "route-private": cmd_route_private,
               "escalate": cmd_escalate, "outbox": cmd_outbox, "log": cmd_log,
               "report": cmd_report, "digest": cmd_digest, "rules": cmd_rules_test,
               "explain": cmd_explain, "approvals": cmd_approvals}[args.command]
    return handler(args, config, store, actor)


def _config(args: argparse.Namespace) -> Config:
    path = find_config(args.config)
    if path is None:
        raise CliError("no config found (looked for --config, $CM_CONSOLE_CONFIG, "
                       "./cm-console.yaml and $XDG_CONFIG_HOME/cm-console/cm-console.yaml).\n"
                       "Copy config.example.yaml to cm-console.yaml, or try `cm-console demo`.")
    config = load_config(path)
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    return config


def open_store(config: Config, *, recover: bool = False) -> Store:
    store = Store(config.store, recover=recover)
    if store.recovered_from:
        print(f"cm-console: restored {config.store} from its last good copy; the damaged file "
              f"was kept as {store.recovered_from}", file=sys.stderr)
    return store


def _json_line(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


# --------------------------------------------------------------------------- commands


def cmd_check_config(args: argparse.Namespace) -> int:
    path = find_config(args.config)
    if path is None:
        raise CliError("no config found; nothing to check (looked for --config, "
                       "$CM_CONSOLE_CONFIG, ./cm-console.yaml and "
                       "$XDG_CONFIG_HOME/cm-console/cm-console.yaml)", EXIT_USAGE)
    if not path.exists():
        raise CliError(f"{path}: no such file", EXIT_USAGE)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        errors = sum(1 for i in exc.issues if i.severity == "error")
        print(f"{path}: {errors} error(s)", file=sys.stderr)
        return EXIT_FAILED
    config.warnings.extend(unset_references(path))
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    targets = len(config.escalation_targets)
    warnings = f", {len(config.warnings)} warning(s)" if config.warnings else ""
    print(f"{path}: ok ({len(config.sources)} sources, {len(config.team)} team members, "
          f"{len(config.templates)} templates, {targets} escalation "
          f"target{'s' if targets != 1 else ''}{warnings})")
    return EXIT_OK


def cmd_poll(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    import asyncio

    from .poller import Poller

    if args.source:
        unknown = [s for s in args.source if config.source(s) is None]
        if unknown:
            raise CliError(f"unknown source(s): {', '.join(unknown)}")
    tty = sys.stdout.isatty() and not args.json

    def line(result: SourceResult) -> str:
        if result.status == "error":
            return f"{result.source}: error: {result.error}"
        if result.status in ("waiting", "unsupported"):
            return f"{result.source}: {result.status}: {result.error}"
        if result.status in ("304", "unchanged"):
            return f"{result.source}: not modified"
        note = f"; {result.error}" if result.error else ""
        return f"{result.source}: {result.new} new ({result.entries} in feed{note})"

    def emit(report: CycleReport) -> None:
        for result in sorted(report.results, key=lambda r: r.source):
            if args.json:
                _json_line({"source": result.source, "status": result.status,
                            "new": result.new, "entries": result.entries,
                            "error": result.error, "seconds": round(result.seconds, 3)})
            elif not tty:
                print(line(result))
        if not args.json:
            errs = len(report.errors)
            print(f"polled {len(report.results)} source(s) in "
                  f"{report.finished - report.started:.1f}s: {len(report.new_ids)} new item(s), "
                  f"{errs} error(s)")

    async def once() -> CycleReport:
        with Poller(config, store) as poller:
            if not tty:
                return await poller.poll(only_due=args.due, source_ids=args.source)
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            console = _console()
            new_total = 0
            with Progress(TextColumn("polling"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[new]} new"), console=console,
                          transient=True) as progress:
                task = progress.add_task("poll", total=None, new=0)

                def on_progress(done: int, total: int, result: SourceResult,
                                added: list[str]) -> None:
                    nonlocal new_total
                    new_total += len(added)
                    progress.update(task, completed=done, total=total, new=new_total)
                    from rich.text import Text

                    console.print(Text(line(result),
                                       style="red" if result.status == "error" else ""))

                return await poller.poll(only_due=args.due, source_ids=args.source,
                                         on_progress=on_progress)

    def breaches() -> None:
        from .sla import mark_breaches

        for item_id in mark_breaches(store, config):
            if args.json:
                _json_line({"item": item_id, "sla": "breached"})
            else:
                print(f"{item_id}: passed its first-response SLA")

    if args.once or args.due:
        report = asyncio.run(once())
        emit(report)
        # As the TUI and the poll loop do: a cron-driven `poll --due` is the only thing
        # running for some teams, and their breach rules must run too.
        breaches()
        return EXIT_FAILED if report.errors else EXIT_OK

    def cycle(report: CycleReport) -> None:
        if report.results:
            emit(report)
        from .delivery import deliver_due

        breaches()  # breach rules run between polls
        from .delivery import prune

        prune(store)  # delivered/cancelled entries older than 30 days leave the queue
        for result in deliver_due(store, config):  # the outbox drains between polls
            print(_delivery_line(result.entry, result.ok, result.error))

    async def forever() -> None:
        stop = asyncio.Event()
        with Poller(config, store) as poller:
            await poller.run_forever(stop, on_cycle=cycle)

    print("polling on each source's interval; ctrl+c stops", file=sys.stderr)
    asyncio.run(forever())
    return EXIT_OK


def item_json(item: Item) -> dict[str, Any]:
    return {"id": item.id, "source": item.source, "type": item.source_type,
            "author": item.author, "title": item.title, "url": item.url,
            "published": item.published, "state": item.state, "tags": item.tags,
            "assignee": item.assignee, "priority": item.priority}


def cmd_items(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    if args.source and config.source(args.source) is None and args.source not in (
            store.counts()["source"]):
        known = ", ".join(s.id for s in config.sources) or "none configured"
        raise CliError(f'unknown source "{args.source}" (known: {known})')
    ids = store.item_ids(states=args.state, source=args.source, tag=args.tag, text=args.search)
    if args.limit:
        ids = ids[: args.limit]
    items = store.items(ids)
    if args.json:
        for item in items:
            _json_line(item_json(item))
        return EXIT_OK
    if sys.stdout.isatty():
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("id", "published", "source", "state", "author", "title"):
            table.add_column(col, overflow="ellipsis", no_wrap=True,
                             ratio=3 if col == "title" else None)
        for item in items:
            table.add_row(*(Text(v) for v in (item.id, _when(item.published), item.source,
                                               item.state, one_line(item.author, 24),
                                               one_line(item.title, 200))))
        _console().print(table)
    else:
        for item in items:
            print("\t".join((item.id, _when(item.published), item.source, item.state,
                             one_line(item.author, 60), one_line(item.title, 300))))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    try:
        item = store.find_item(args.id)
    except KeyError as exc:
        print(f"cm-console: {exc.args[0]}", file=sys.stderr)
        return EXIT_FAILED
    text, _html = store.body(item.id)
    events = store.events(item=item.id)
    if args.json:
        _json_line({**item_json(item), "text": text,
                    "events": [{"ts": e.ts, "actor": e.actor, "action": e.action,
                                "data": e.data} for e in events]})
        return EXIT_OK
    triage = [f"priority {item.priority}" if item.priority != "normal" else "",
              f"assigned to {item.assignee}" if item.assignee else "",
              f"tags {_plain(item.tags)}" if item.tags else ""]
    out = [
        one_line(item.title, 500),
        f"{item.source} · {one_line(item.author, 100) or 'unknown author'} · "
        f"{_when(item.published)} · {item.state}",
        *([" · ".join(t for t in triage if t)] if any(triage) else []),
        item.url or "(no link)",
        "",
        safe_text(text, 20_000) or "(no text)",
        "",
        "History:" if events else "History: none",
    ]
    out += [f"  {_when(e.ts)}  {e.actor}  {e.action}  {_event_detail(e)}".rstrip()
            for e in events]
    print("\n".join(out))
    return EXIT_OK


def cmd_sources(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    states = store.source_states()
    counts = store.counts()["source"]
    for src in config.sources:
        st = states.get(src.id)
        row = {
            "id": src.id, "type": src.type, "enabled": src.enabled,
            "status": st.last_status if st else "never polled",
            "last_poll": st.last_poll if st else None,
            "last_success": st.last_success if st else None,
            "error": st.last_error if st else "", "items": counts.get(src.id, 0),
            "next_due": st.next_due if st else None,
        }
        if args.json:
            _json_line(row)
        else:
            status = row["status"] + (f": {row['error']}" if row["error"] else "")
            print(f"{src.id:<20} {src.type:<10} {row['items']:>6} items  last poll "
                  f"{_when(row['last_poll']):<16}  {status}")
    return EXIT_OK


def cmd_mark(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    from .actions import set_state

    try:
        item = store.find_item(args.id)
        set_state(store, item.id, args.state, actor)
    except KeyError as exc:
        print(f"cm-console: {exc.args[0]}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{item.id}: {args.state}")
    return EXIT_OK



def _find(store: Store, ref: str) -> Item:
    try:
        return store.find_item(ref)
    except KeyError as exc:
        raise CliError(exc.args[0], EXIT_FAILED) from None


def _template(config: Config, template_id: str | None, item: Item, visibility: str,
              prefer: str = "", option: str = "--template") -> Any:
    """The named template, else the first that fits (preferring ids/titles with ``prefer``)."""
    from .templates import templates_for

    if template_id:
        found = next((t for t in config.templates if t.id == template_id), None)
        if found is None:
            known = ", ".join(t.id for t in config.templates) or "none configured"
            raise CliError(f'no template "{template_id}" (known: {known})')
        return found
    fitting = templates_for(config, item.source_type, visibility)
    if not fitting:
        raise CliError(f"no {visibility} template fits {item.source_type}; pass {option} ID")
    if prefer:
        liked = [t for t in fitting if prefer in t.id.lower() or prefer in t.title.lower()]
        if liked:
            return liked[0]
    return fitting[0]


def _render(config: Config, template: Any, item: Item, actor: str) -> str:
    from .templates import TemplateError, render, values_for

    member = config.member(actor)
    source = config.source(item.source)
    values = values_for(item, actor, member.name if member else actor,
                        source.label if source else item.source)
    try:
        return render(template, values)
    except TemplateError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None


def _delivery_line(entry: Any, ok: bool, error: str) -> str:
    from .delivery import describe

    what = f"{describe(entry)} for {entry.item}"
    return f"delivered {what}" if ok else f"not delivered yet: {what}: {error}"


def _deliver_now(store: Store, config: Config) -> int:
    from .delivery import deliver_due

    failed = 0
    for result in deliver_due(store, config):
        print(_delivery_line(result.entry, result.ok, result.error))
        failed += not result.ok
    return EXIT_FAILED if failed else EXIT_OK


def cmd_reply(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    from .actions import reply

    item = _find(store, args.id)
    template = _template(config, args.template, item, "public") if (
        args.template or not args.text) else None
    # --text replaces the rendering (an edited reply); the template still sets the limit and
    # is logged as the source of the reply.
    text = args.text if args.text else _render(config, template, item, actor)
    if args.dry_run:
        print(text)
        return EXIT_OK
    from . import approvals, claims

    # A script has no review screen to show these on: refuse instead of answering twice.
    earlier = claims.conflicts(store, item.id, actor, 0.0)
    if earlier and not args.force:
        raise CliError(f"{item.id}: {'; '.join(earlier)}; nothing sent (--force answers "
                       "anyway)", EXIT_FAILED)
    if approvals.needs_approval(config, actor, template):
        approval = approvals.submit(store, item.id, actor, "reply",
                                    {"text": text, "template": template.id if template else ""})
        print(f"{item.id}: waiting for approval ({approval}); a lead approves it with "
              f"`cm-console approvals --approve {approval}`")
        return EXIT_OK
    try:
        sent = reply(store, config, item.id, text, actor, template=template, delay=0.0)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    print(sent.text)
    if sent.mode == "outbox":  # a script has no undo window: post it now
        return _deliver_now(store, config)
    print(f"\n{item.source} has no reply API here: paste the text above at "
          f"{item.url or '(no link)'}; the item is marked replied.", file=sys.stderr)
    return EXIT_OK


def cmd_route_private(args: argparse.Namespace, config: Config, store: Store,
                      actor: str) -> int:
    from .actions import route_private

    item = _find(store, args.id)
    # The acknowledgement defaults to a public template about moving to private.
    public = _template(config, args.public, item, "public", prefer="private", option="--public")
    private = _template(config, args.private, item, "private", option="--private")
    public_text = _render(config, public, item, actor)
    private_text = _render(config, private, item, actor)
    if args.dry_run:
        print(f"public:\n{public_text}\n\nprivate:\n{private_text}")
        return EXIT_OK
    from . import approvals

    if approvals.needs_approval(config, actor, public, private):
        approval = approvals.submit(store, item.id, actor, "route_private", {
            "public_text": public_text, "private_text": private_text,
            "public_template": public.id, "private_template": private.id})
        print(f"{item.id}: waiting for approval ({approval})")
        return EXIT_OK
    try:
        sent = route_private(store, config, item.id, actor, public_text=public_text,
                             private_text=private_text, public_template=public,
                             private_template=private, delay=0.0)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    if sent.mode == "clipboard":
        print(f"public acknowledgement (paste at {item.url or '(no link)'}):\n{sent.text}\n")
    return _deliver_now(store, config)


def cmd_escalate(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    from .actions import escalate

    item = _find(store, args.id)
    try:
        escalate(store, config, item.id, args.to, args.reason, actor, priority=args.priority,
                 delay=0.0)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    print(f"{item.id}: escalated to {args.to}")
    return _deliver_now(store, config)


def cmd_outbox(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    from .delivery import cancel, retry

    refused = []
    for entry_id in args.cancel or ():
        entry = store.get_outbox(entry_id)
        if entry is not None and cancel(store, entry_id, actor, attempted=True):
            tried = (f" (tried {entry.attempts}x: {entry.target} may have received it once)"
                     if entry.attempts else "")
            print(f"{entry_id}: cancelled{tried}")
        else:
            refused.append(entry_id)
            why = "no such entry" if entry is None else f"{entry.status}, or being sent now"
            print(f"{entry_id}: not cancelled ({why})", file=sys.stderr)
    if args.retry is not None:
        changed = retry(store, args.retry or None, actor)
        print(f"{len(changed)} entr{'y' if len(changed) == 1 else 'ies'} due again")
    code = _deliver_now(store, config) if args.deliver or args.retry is not None else EXIT_OK
    statuses = None if args.all else ["pending", "failed"]
    for entry in store.outbox(statuses):
        if args.json:
            _json_line({"id": entry.id, "kind": entry.kind, "item": entry.item,
                        "target": entry.target, "status": entry.status,
                        "attempts": entry.attempts, "next_attempt": entry.next_attempt,
                        "last_error": entry.last_error, "created": entry.created,
                        "delivered": entry.delivered})
        else:
            note = f"  {entry.last_error}" if entry.last_error else ""
            print(f"{entry.id}  {entry.status:<9} {entry.kind:<7} {entry.target:<12} "
                  f"{entry.item}  tries {entry.attempts}{note}")
    return EXIT_FAILED if refused else code


def cmd_log(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    item_id = _find(store, args.item).id if args.item else None
    events = store.events(item=item_id, limit=args.limit or None)
    if args.limit and len(events) == args.limit:
        total = len(store.events(item=item_id))
        if total > args.limit:
            print(f"(the newest {args.limit} of {total} entries; --limit 0 shows all)",
                  file=sys.stderr)
    for event in events:
        if args.json:
            _json_line({"id": event.id, "ts": event.ts, "actor": event.actor,
                        "action": event.action, "item": event.item, "data": event.data})
        else:
            print(f"{_when(event.ts)}  {event.actor:<12} {event.action:<16} {event.item}  "
                  f"{_event_detail(event)}".rstrip())
    return EXIT_OK


def _plain(value: Any, limit: int = 60) -> str:
    """A value for people: lists as "a, b", not Python's ['a', 'b']."""
    if isinstance(value, list | tuple):
        return one_line(", ".join(str(v) for v in value), limit)
    if isinstance(value, dict):
        return one_line(", ".join(f"{k} {v}" for k, v in value.items()), limit)
    return one_line(value, limit)


def _event_detail(event: Any) -> str:
    """What an event changed, then its other details: "state=done tags=billing, pr"."""
    parts = []
    changed = event.data.get("after")
    if isinstance(changed, dict):
        parts += [f"{k}={_plain(v, 40) or '-'}" for k, v in changed.items()]
    if event.action == "rules" and event.data.get("rules"):
        parts.append(f"by {_plain(event.data['rules'])}")
    parts += [f"{k}={_plain(v)}" for k, v in event.data.items()
              if k not in ("before", "after", "rules") and v not in ("", None, [], {})]
    return " ".join(parts)


def _date(text: str, what: str) -> float:
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%d"))
    except ValueError:
        raise CliError(f'{what}: expected a date like 2026-11-24, got "{text}"') from None


def cmd_report(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    from .models import parse_duration
    from .reports import build_report, render

    now = time.time()
    if args.start or args.end:
        if args.since:
            raise CliError("use --since or --from/--to, not both")
        start = _date(args.start, "--from") if args.start else 0.0
        end = _date(args.end, "--to") if args.end else now
    else:
        try:
            start = now - parse_duration(args.since or "7d")
        except ValueError as exc:
            raise CliError(f"--since: {exc}") from None
        end = now + 1
    text = render(build_report(store, config, start, end, now), args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_digest(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    from .reports import digest_text

    text = digest_text(store, config)
    if args.email is None:
        sys.stdout.write(text)
        return EXIT_OK
    to = args.email or [m.email for m in config.team if m.email]
    if not to:
        raise CliError("nobody to send the digest to: pass addresses or give team members an "
                       "email in the config")
    from .delivery import enqueue

    enqueue(store, "email", "", "digest", {"to": to, "subject": text.splitlines()[0],
                                           "body": text}, actor)
    return _deliver_now(store, config)


def cmd_rules_test(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    from .models import parse_duration
    from .rules import apply_rules, match_text

    try:
        since = time.time() - parse_duration(args.since)
    except ValueError as exc:
        raise CliError(f"--since: {exc}") from None
    if not config.rules:
        print("the config has no rules", file=sys.stderr)
        return EXIT_OK
    changed = 0
    total = 0
    per_rule: dict[str, int] = {r.id: 0 for r in config.rules}
    for item in store.items(store.item_ids()):
        if item.published < since:
            continue
        total += 1
        result = apply_rules(config.rules, item, match_text(item, store.body(item.id)[0]))
        for match in result.matches:
            per_rule[match.rule.id] += 1
        diff = {k: v for k, v in result.changes.items()
                if k != "extra" and getattr(item, k) != v}
        if result.changes.get("extra", {}).get("escalate_to") and \
                item.extra.get("escalate_to") != result.changes["extra"]["escalate_to"]:
            diff["escalate_to"] = result.changes["extra"]["escalate_to"]
        if not diff:
            continue
        changed += 1
        if args.json:
            _json_line({"id": item.id, "title": item.title, "changes": diff,
                        "rules": [m.rule.id for m in result.matches]})
        else:
            what = ", ".join(f"{k} → {v}" for k, v in diff.items())
            print(f"{item.id}  {one_line(item.title, 50)}\n    {what}  "
                  f"(by {', '.join(m.rule.id for m in result.matches)})")
    if not args.json:
        print(f"{chr(10) if changed else ''}{total} items since {_when(since)}: "
              f"{changed} would change")
        for rule_id, count in per_rule.items():
            print(f"  {rule_id}: matches {count}")
    return EXIT_OK


def cmd_explain(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    from .rules import evaluate, match_text, sentiment_label

    item = _find(store, args.id)
    text = match_text(item, store.body(item.id)[0])
    print(f"{item.id}  {one_line(item.title, 80)}")
    print(f"source {item.source} ({item.source_type}), author {one_line(item.author, 60)}, "
          f"sentiment {sentiment_label(item.extra.get('sentiment_score'))}")
    if not config.rules:
        print("the config has no rules")
        return EXIT_OK
    for rule, matched, reasons in evaluate(config.rules, item, text):
        mark = "✓" if matched else "✗"
        print(f"  {mark} {rule.id} (line {rule.line}): " + "; ".join(reasons))
    return EXIT_OK


def cmd_approvals(args: argparse.Namespace, config: Config, store: Store, actor: str) -> int:
    from . import approvals

    try:
        if args.approve:
            sent = approvals.approve(store, config, args.approve, actor, force=args.force)
            print(f"approved: {sent.item.id} ({sent.mode})")
            if sent.mode == "clipboard":  # no reply API: a person posts it; here it is
                print(f"post this at {sent.item.url or 'the post'}:\n{sent.text}")
            return _deliver_now(store, config) if sent.outbox else EXIT_OK
        if args.reject:
            approvals.reject(store, config, args.reject, actor, args.note)
            print(f"rejected: {args.reject}")
            return EXIT_OK
    except (KeyError, ValueError) as exc:
        raise CliError(str(exc.args[0] if isinstance(exc, KeyError) else exc),
                       EXIT_FAILED) from None
    for row in store.approvals():
        if args.json:
            _json_line(row)
            continue
        payload = row["payload"]
        text = payload.get("text") or payload.get("private_text", "")
        print(f"{row['id']}  {row['op']:<13} by {row['actor']:<10} {row['item']}  "
              f"{one_line(text, 70)}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
