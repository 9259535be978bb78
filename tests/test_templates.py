"""Scripted responses: hostile values stay literal, requires, platform lengths, check-config."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cm_console import cli
from cm_console.actions import reply
from cm_console.config import Config, Template
from cm_console.feedserver import FeedServer
from cm_console.models import Item
from cm_console.poller import Poller
from cm_console.sources import item_id
from cm_console.store import NewItem, Store
from cm_console.templates import (
    PLATFORM_LIMITS,
    TemplateError,
    case_number,
    length,
    length_limit,
    render,
    templates_for,
    values_for,
)

from .feeds import rss

NOW = 1_760_000_000.0

HOSTILE = [
    "{item.__class__}",
    "{item.__class__.__mro__[1].__subclasses__()}",
    "{{ 7*7 }}",
    "${HOME}",
    "{0}",
    "%s%s%n",
    "[/b][bold red]boom",
    "{author}",
    "{case}",
    "{{",
    "}}",
    "\\1 \\g<0>",  # regex replacement syntax: must not be expanded by re.sub
]

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme


def make_item(*, source: str = "blog", source_type: str = "rss", key: str = "1",
              author: str = "Ann", title: str = "A title", handle: str = "",
              url: str = "https://example.com/posts/1") -> Item:
    return Item(id=item_id(source, key), source=source, source_type=source_type, guid=key,
                url=url, title=title, author=author, author_handle=handle, published=NOW,
                fetched=NOW)


def tpl(body: str, *, id: str = "t", requires: list[str] | None = None,
        max_length: int | None = None) -> Template:
    return Template(id=id, title=id, body=body, requires=requires or [], max_length=max_length)


def values(item: Item) -> dict[str, str]:
    return values_for(item, "ann", "Ann Agent", "The Blog", now=NOW)


def stored(config: Config, *items: Item) -> Store:
    store = Store(config.store)
    store.add_items([NewItem(i, text="body", html="") for i in items])
    return store


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_author_and_title_appear_literally(hostile: str) -> None:
    item = make_item(author=f"Mal {hostile}", title=f"Re: {hostile} !")
    out = render(tpl("Hi {author}, about {title} [{case}] from {agent} ({agent_id})"),
                 values(item))
    case = case_number(item.id)
    assert out == f"Hi Mal {hostile}, about Re: {hostile} ! [{case}] from Ann Agent (ann)"


def test_nothing_in_a_value_is_evaluated() -> None:
    item = make_item(author="{{ 7*7 }} ${HOME} {0} %s", title="{item.__class__} {title}")
    out = render(tpl("{author}|{title}"), values(item))
    assert out == "{{ 7*7 }} ${HOME} {0} %s|{item.__class__} {title}"
    assert "49" not in out
    assert os.environ.get("HOME", "/nonexistent") not in out
    assert "Item" not in out and "class '" not in out


@pytest.mark.parametrize("raw", ["Mallory\r\nBcc: evil@x", "Mallory\rX: 1", "Mallory\nX: 1",
                                 "Mallory\u2028X: 1", "Mallory\x1b[2J\x07X: 1"])
def test_line_breaks_and_controls_in_values_become_one_line(raw: str) -> None:
    out = render(tpl("Hi {author} / {title}"), values(make_item(author=raw, title=raw)))
    assert "\r" not in out and "\n" not in out and "\x1b" not in out and "\u2028" not in out
    assert out.startswith("Hi Mallory") and out.count(" / Mallory") == 1


def test_double_braces_are_literal_braces() -> None:
    item = make_item(author="Bo")
    case = case_number(item.id)
    assert render(tpl("{{author}} is {author}; {{{case}}} }} {{"), values(item)) == \
        f"{{author}} is Bo; {{{case}}} }} {{"


def test_render_never_uses_format_specs_or_attribute_access() -> None:
    # check-config refuses these; if one slipped through it is left exactly as typed.
    body = "{author!r} {author:>30} {author.__class__} {author[0]} {0} {AUTHOR} {}"
    assert render(tpl(body), values(make_item(author="Bo"))) == body


def test_every_documented_placeholder_renders() -> None:
    item = make_item(author="Ann Lee", handle="@ann@example.social", title="Broken",
                     url="https://example.com/p/9")
    out = render(tpl("{author}|{handle}|{title}|{link}|{source}|{agent}|{agent_id}|{case}|"
                     "{date}"), values(item))
    date = time.strftime("%Y-%m-%d", time.localtime(NOW))
    assert out == (f"Ann Lee|@ann@example.social|Broken|https://example.com/p/9|The Blog|"
                   f"Ann Agent|ann|{case_number(item.id)}|{date}")


def test_case_number_is_short_and_stable() -> None:
    a, b = item_id("blog", "1"), item_id("blog", "2")
    assert re.fullmatch(r"C-[0-9A-F]{6}", case_number(a))
    assert case_number(a) == case_number(a) != case_number(b)


# --------------------------------------------------------------------------- requires


def test_requires_with_an_empty_value_raises() -> None:
    item = make_item(handle="")
    with pytest.raises(TemplateError, match=r'"dm" needs \{handle\}'):
        render(tpl("Hi {handle}", id="dm", requires=["handle"]), values(item))
    ok = make_item(handle="@bo")
    assert render(tpl("Hi {handle}", requires=["handle"]), values(ok)) == "Hi @bo"


def test_requires_author_refuses_an_anonymous_post() -> None:
    anonymous = make_item(author="")
    with pytest.raises(TemplateError, match=r"\{author\}"):
        render(tpl("Thanks {author}", requires=["author"]), values(anonymous))
    # Without `requires`, a missing name still reads naturally.
    assert render(tpl("Thanks {author}!"), values(anonymous)) == "Thanks there!"


def test_cli_reply_with_a_failing_requires_exits_1(make_config: Callable[..., Config],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(templates=[{"id": "dm", "body": "Hi {handle}", "requires": ["handle"]}])
    item = make_item()
    stored(config, item)
    code = cli.main(["--config", str(config.path), "--as", "ann", "reply", item.id,
                     "--template", "dm", "--dry-run"])
    assert code == 1
    assert "needs {handle}" in capsys.readouterr().err


# --------------------------------------------------------------------------- lengths


@pytest.mark.parametrize(("text", "graphemes"), [
    (FAMILY, 1),
    ("\U0001f44d\U0001f3fd", 1),  # skin tone modifier
    ("\U0001f1eb\U0001f1f7\U0001f1e9\U0001f1ea", 2),  # two flags
    ("1\ufe0f\u20e3", 1),  # keycap
    ("e\u0301", 1),  # combining accent
    ("\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", 1),  # tag flag
    ("\u2764\ufe0f", 1),
    ("\u1100\u1161\u11a8", 1),  # Hangul jamo L V T
    ("abc", 3),
])
def test_bluesky_counts_graphemes(text: str, graphemes: int) -> None:
    assert length(text, "bluesky") == graphemes
    assert length(text, "mastodon") == len(text)


def test_platform_limits_and_overrides(make_config: Callable[..., Config]) -> None:
    assert PLATFORM_LIMITS["mastodon"] == 500 and PLATFORM_LIMITS["bluesky"] == 300
    config = make_config([
        {"id": "masto", "type": "mastodon", "max_length": 1000},
        {"id": "blog", "type": "rss", "url": "https://example.com/feed", "max_length": 80},
    ])
    assert length_limit(None, None, "mastodon") == 500
    assert length_limit(None, None, "bluesky") == 300
    assert length_limit(None, None, "rss") is None
    assert length_limit(None, config.source("masto"), "mastodon") == 1000
    assert length_limit(None, config.source("blog"), "rss") == 80
    assert length_limit(tpl("x", max_length=20), config.source("blog"), "rss") == 20


def test_reply_refuses_over_long_text_with_the_numbers(
        make_config: Callable[..., Config]) -> None:
    config = make_config()
    masto = make_item(source="masto", source_type="mastodon")
    store = stored(config, masto)
    with pytest.raises(ValueError, match=r"501.*500"):
        reply(store, config, masto.id, "x" * 501, "ann")
    assert store.get_item(masto.id).state == "new"  # type: ignore[union-attr]
    assert reply(store, config, masto.id, "x" * 500, "ann").item.state == "replied"


def test_bluesky_reply_limit_counts_an_emoji_sequence_once(
        make_config: Callable[..., Config]) -> None:
    config = make_config()
    sky = make_item(source="sky", source_type="bluesky")
    store = stored(config, sky)
    with pytest.raises(ValueError, match=r"301.*300"):
        reply(store, config, sky.id, FAMILY * 301, "ann")
    sent = reply(store, config, sky.id, FAMILY * 300, "ann")
    assert sent.text == FAMILY * 300  # the joiners survive: the family is not split up


def test_source_and_template_max_length_overrides(make_config: Callable[..., Config]) -> None:
    config = make_config([{"id": "blog", "type": "rss", "url": "https://example.com/feed",
                           "max_length": 80}],
                         templates=[{"id": "short", "body": "Thanks {author}",
                                     "max_length": 20}])
    a, b = make_item(key="a"), make_item(key="b")
    store = stored(config, a, b)
    with pytest.raises(ValueError, match=r"81.*80"):
        reply(store, config, a.id, "y" * 81, "ann")
    reply(store, config, a.id, "y" * 80, "ann")
    short = config.templates[0]
    with pytest.raises(ValueError, match=r"21.*20"):
        reply(store, config, b.id, "z" * 21, "ann", template=short)


def test_cli_reply_over_long_exits_1_with_the_numbers(
        make_config: Callable[..., Config], capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config()
    masto = make_item(source="masto", source_type="mastodon")
    store = stored(config, masto)
    code = cli.main(["--config", str(config.path), "--as", "ann", "reply", masto.id,
                     "--text", "w" * 600])
    assert code == 1
    err = capsys.readouterr().err
    assert "600" in err and "500" in err
    store.refresh()
    assert store.get_item(masto.id).state == "new"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- picking


def test_templates_for_filters_by_channel_and_visibility(
        make_config: Callable[..., Config]) -> None:
    config = make_config(templates=[
        {"id": "any", "body": "a"},
        {"id": "social", "body": "b", "channels": ["mastodon", "bluesky"]},
        {"id": "dm", "body": "c", "visibility": "private"},
    ])
    assert [t.id for t in templates_for(config, "rss")] == ["any", "dm"]
    assert [t.id for t in templates_for(config, "mastodon", "public")] == ["any", "social"]
    assert [t.id for t in templates_for(config, "bluesky", "private")] == ["dm"]


# --------------------------------------------------------------------------- end to end


def test_hostile_feed_values_through_poller_and_cli_stay_literal(
        feed_server: FeedServer, make_config: Callable[..., Config],
        capsys: pytest.CaptureFixture[str]) -> None:
    author = "{item.__class__} {{ 7*7 }} ${HOME}\r\nBcc: evil@x [/b]"
    title = "{0} %s {author} {{case}}"
    url = feed_server.add("/feed.xml", rss([{"guid": "h1", "title": title, "author": author,
                                             "link": "https://example.com/h1",
                                             "date": time.time() - 60, "html": "<p>hi</p>"}]))
    config = make_config([{"id": "blog", "type": "rss", "url": url, "name": "Blog"}],
                         templates=[{"id": "thanks", "title": "Thanks",
                                     "body": "Hi {author}: {title} [{case}] -- {agent} {{ok}}"}],
                         team=[{"id": "ann", "name": "Ann Agent"}])
    store = Store(config.store)
    with Poller(config, store) as poller:
        assert len(asyncio.run(poller.poll()).new_ids) == 1
    [iid] = store.item_ids()
    code = cli.main(["--config", str(config.path), "--as", "ann", "reply", iid,
                     "--template", "thanks", "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    assert out == (f"Hi {{item.__class__}} {{{{ 7*7 }}}} ${{HOME}} Bcc: evil@x [/b]: "
                   f"{{0}} %s {{author}} {{{{case}}}} [{case_number(iid)}] -- Ann Agent {{ok}}\n")
    store.refresh()
    assert store.get_item(iid).state == "new"  # type: ignore[union-attr]  # dry run


# --------------------------------------------------------------------------- check-config


def test_check_config_rejects_an_unknown_placeholder_naming_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cm-console.yaml"
    path.write_text(
        "store: store.json\n"                                  # 1
        "templates:\n"                                         # 2
        "  - id: fine\n"                                       # 3
        "    body: 'Hi {author}, {{literal}}'\n"               # 4
        "  - id: broken\n"                                     # 5
        "    title: Broken\n"                                  # 6
        "    body: 'Hi {nope} and {author.__class__}'\n"       # 7
        "  - id: unbalanced\n"                                 # 8
        "    body: 'Hi {author'\n",                            # 9
        encoding="utf-8")
    assert cli.main(["--config", str(path), "check-config"]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(path))}:7: templates\[1\]\.body: unknown placeholder "
                     r'"\{nope\}"', err), err
    assert '"{author.__class__}"' in err
    assert f"{path}:9: templates[2].body: unbalanced" in err
    assert ":4:" not in err  # {author} and {{literal}} are fine
    assert "3 error(s)" in err
