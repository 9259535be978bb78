"""Proves the shared config is strict and helpful: every error names file:line: key.path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cm_console.config import (
    ConfigError,
    find_config,
    load_config,
    parse_config,
    resolve_secret,
    resolve_user,
)

ROOT = Path(__file__).resolve().parent.parent


def errors_of(text: str, file: str = "cm-console.yaml") -> list[str]:
    """Every issue the validator reports for ``text``, as the user sees them."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, file)
    return [str(issue) for issue in info.value.issues]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- messages


def test_bad_duration_names_file_line_and_key_path(tmp_path: Path) -> None:
    text = (
        "store: team.db.json\n"          # 1
        "sources:\n"                     # 2
        "  - id: blog\n"                 # 3
        "    type: rss\n"                # 4
        "    interval: often\n"          # 5
        "    url: https://example.com/feed\n"
    )
    assert errors_of(text) == [
        'cm-console.yaml:5: sources[0].interval: expected a duration like 5m, got "often"'
    ]
    # Loaded from disk, the real file name is the one named.
    path = write(tmp_path / "cm-console.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f'{path}:5: sources[0].interval: expected a duration like 5m, got "often"'
    )


def test_errors_deep_in_lists_point_at_their_own_line() -> None:
    text = (
        "sources:\n"
        "  - {id: a, type: rss, url: 'https://a.example/feed'}\n"
        "  - {id: b, type: rss, url: 'https://b.example/feed'}\n"
        "  - id: c\n"
        "    type: rss\n"
        "    url: https://c.example/feed\n"
        "    interval: 3 fortnights\n"
        "team:\n"
        "  - id: ann\n"
        "    role: wizard\n"
    )
    assert errors_of(text) == [
        'cm-console.yaml:7: sources[2].interval: expected a duration like 5m, '
        'got "3 fortnights"',
        'cm-console.yaml:10: team[0].role: unknown role "wizard" (known: agent, pr, lead, '
        'specialist, legal, product, admin)',
    ]


def test_duplicate_keys_are_refused_with_their_line() -> None:
    text = (
        "sources:\n"
        "  - id: a\n"
        "    type: rss\n"
        "    url: https://one.example/feed\n"
        "    url: https://two.example/feed\n"
        "store: a.json\n"
        "store: b.json\n"
    )
    assert errors_of(text) == [
        "cm-console.yaml:5: sources[0].url: duplicate key (an earlier value would be lost)",
        "cm-console.yaml:7: store: duplicate key (an earlier value would be lost)",
    ]


def test_duplicate_source_ids_are_refused() -> None:
    text = (
        "sources:\n"
        "  - {id: a, type: rss, url: 'https://one.example/feed'}\n"
        "  - {id: a, type: rss, url: 'https://two.example/feed'}\n"
    )
    assert errors_of(text) == ['cm-console.yaml:3: sources[1].id: "a" is already used by '
                               "sources[0]"]


@pytest.mark.parametrize("text, line", [
    ("defaults: &d {type: rss}\nsources: []\n", 1),
    ("sources:\n  - id: a\n    type: *t\n", 3),
    # Billion laughs: refused at the first anchor, long before anything expands.
    ('a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: [*c,*c]\n', 1),
])
def test_anchors_and_aliases_are_refused(text: str, line: int) -> None:
    [message] = errors_of(text)
    assert message.startswith(f"cm-console.yaml:{line}: invalid YAML: ")
    assert "are not allowed" in message


def test_merge_keys_are_refused() -> None:
    messages = errors_of("poll: {<<: {timeout: 5s}}\n")
    assert "cm-console.yaml:1: poll: merge keys (<<) are not allowed" in messages


def test_yaml_syntax_error_names_its_line() -> None:
    messages = errors_of("store: x.json\nsources:\n  - id: a\n   type: [rss\n")
    assert len(messages) == 1
    assert messages[0].startswith("cm-console.yaml:")
    assert "invalid YAML" in messages[0]
    line = int(messages[0].split(":")[1])
    assert 3 <= line <= 5


def test_unknown_keys_suggest_the_known_one() -> None:
    text = (
        "stroe: x.json\n"
        "poll:\n"
        "  timout: 5s\n"
        "sources:\n"
        "  - id: a\n"
        "    type: rss\n"
        "    url: https://a.example/feed\n"
        "    intervall: 5m\n"
        "  - id: m\n"
        "    type: mastodon\n"
        "    instanse: https://mastodon.example\n"
        "templates:\n"
        "  - id: t\n"
        "    bdy: hello\n"
        "    body: hello\n"
        "nonsense_key: 1\n"
    )
    assert errors_of(text) == [
        'cm-console.yaml:1: stroe: unknown key (did you mean "store"?)',
        'cm-console.yaml:3: poll.timout: unknown key (did you mean "timeout"?)',
        'cm-console.yaml:8: sources[0].intervall: unknown key (did you mean "interval"?)',
        'cm-console.yaml:11: sources[1].instanse: unknown key (did you mean "instance"?)',
        'cm-console.yaml:14: templates[0].bdy: unknown key (did you mean "body"?)',
        "cm-console.yaml:16: nonsense_key: unknown key",
    ]


@pytest.mark.parametrize("url, scheme", [
    ("file:///etc/passwd", "file"),
    ("/var/lib/feeds/blog.xml", "none"),
    ("feeds/blog.xml", "none"),
    ("ftp://example.com/feed.xml", "ftp"),
    ("javascript:alert(1)", "javascript"),
    ("http://", "http"),
])
def test_non_http_feed_urls_are_refused(url: str, scheme: str) -> None:
    text = f"sources:\n  - id: blog\n    type: rss\n    url: '{url}'\n"
    assert errors_of(text) == [
        f'cm-console.yaml:4: sources[0].url: expected an http:// or https:// URL, got "{url}" '
        f"(scheme: {scheme}; local files and other schemes are refused)"
    ]


def test_escalation_webhook_must_be_http_too() -> None:
    text = ("escalation:\n  targets:\n    - id: pr\n      webhook: file:///tmp/hook\n")
    [message] = errors_of(text)
    assert message.startswith("cm-console.yaml:4: escalation.targets[0].webhook: expected an "
                              "http:// or https:// URL")


def test_literal_secret_warns_but_env_reference_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "sources:\n"
        "  - id: masto\n"
        "    type: mastodon\n"
        "    instance: https://mastodon.example\n"
        "    token: 9f8e7d6c5b4a39281706f5e4d3c2b1a0\n"
        "  - id: forum\n"
        "    type: discourse\n"
        "    url: https://forum.example\n"
        "    api_key: ${FORUM_API_KEY}\n"
        "smtp:\n"
        "  password: hunter2\n"
    )
    config = parse_config(text)  # warnings do not stop the config from loading
    assert [str(w) for w in config.warnings] == [
        "cm-console.yaml:5: warning: sources[0].token: looks like a literal secret; write it "
        "as ${ENV_VAR} and set the variable outside the shared file",
        "cm-console.yaml:11: warning: smtp.password: looks like a literal secret; write it "
        "as ${ENV_VAR} and set the variable outside the shared file",
    ]
    forum = config.source("forum")
    assert forum is not None and forum.options["api_key"] == "${FORUM_API_KEY}"
    # The reference is resolved only when used, and an unset variable is named.
    monkeypatch.delenv("FORUM_API_KEY", raising=False)
    with pytest.raises(ValueError, match="FORUM_API_KEY is not set"):
        resolve_secret(forum.options["api_key"], "sources[1].api_key")
    monkeypatch.setenv("FORUM_API_KEY", "s3cr3t")
    assert resolve_secret(forum.options["api_key"], "sources[1].api_key") == "s3cr3t"


def test_credentials_in_a_feed_url_warn() -> None:
    config = parse_config("sources:\n  - id: a\n    type: rss\n"
                          "    url: https://bob:pw@example.com/feed\n")
    assert [str(w) for w in config.warnings] == [
        "cm-console.yaml:4: warning: sources[0].url: credentials in a URL end up in git; use "
        "a ${ENV_VAR} reference"
    ]


def test_unknown_template_placeholders_are_rejected_with_their_line() -> None:
    text = (
        "templates:\n"
        "  - id: thanks\n"
        "    title: Thanks\n"
        "    body: 'Thanks {author}! — {agent}'\n"
        "  - id: typo\n"
        "    body: 'Hi {auther}, see {{this}} and {link}'\n"
        "  - id: broken\n"
        "    body: 'Hi {author'\n"
        "  - id: req\n"
        "    body: 'Hi'\n"
        "    requires: [author, karma]\n"
    )
    messages = errors_of(text)
    assert messages == [
        'cm-console.yaml:6: templates[1].body: unknown placeholder "{auther}" (known: '
        "{author}, {handle}, {title}, {link}, {source}, {agent}, {agent_id}, {case}, {date})",
        'cm-console.yaml:8: templates[2].body: unbalanced "{" or "}" (write {{ or }} for a '
        "literal brace)",
        'cm-console.yaml:11: templates[3].requires: unknown variable "karma"',
    ]


def test_every_error_is_listed_not_just_the_first() -> None:
    text = (
        "version: 2\n"
        "poll:\n"
        "  timeout: 0s\n"
        "  concurrency: lots\n"
        "sources:\n"
        "  - id: 'bad id!'\n"
        "    type: gopher\n"
        "    interval: 1s\n"
        "keys:\n"
        "  not_a_binding: x\n"
    )
    messages = errors_of(text)
    assert len(messages) == 7, messages
    for fragment in ("cm-console.yaml:1: version:", "cm-console.yaml:3: poll.timeout:",
                     "cm-console.yaml:4: poll.concurrency:", "cm-console.yaml:6: sources[0].id:",
                     "cm-console.yaml:7: sources[0].type:",
                     "cm-console.yaml:8: sources[0].interval: must be at least 10s",
                     "cm-console.yaml:10: keys.not_a_binding: unknown key"):
        assert any(m.startswith(fragment) for m in messages), (fragment, messages)


def test_unreadable_and_non_utf8_files_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read: No such file"):
        load_config(missing)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("store: caf\xe9.json\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.yaml: not UTF-8 text"):
        load_config(latin)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# " + b"x" * 1_000_001 + b"\n")
    with pytest.raises(ConfigError, match="the limit is 1000000"):
        load_config(huge)


def test_config_example_validates_without_warnings() -> None:
    config = load_config(ROOT / "config.example.yaml")
    assert config.warnings == []
    assert {s.id for s in config.sources} >= {"blog"}
    assert config.team and config.templates and config.escalation_targets


def test_relative_store_path_is_relative_to_the_config_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "team" / "cm-console.yaml", "store: data/team.db.json\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(path).store == (tmp_path / "team" / "data" / "team.db.json").resolve()


# --------------------------------------------------------------------------- discovery


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = write(tmp_path / "xdg" / "cm-console" / "cm-console.yaml", "store: xdg.json\n")
    cwd_cfg = write(tmp_path / "work" / "cm-console.yaml", "store: cwd.json\n")
    env_cfg = write(tmp_path / "env.yaml", "store: env.json\n")
    cli_cfg = write(tmp_path / "cli.yaml", "store: cli.json\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CM_CONSOLE_CONFIG", str(env_cfg))
    monkeypatch.chdir(tmp_path / "work")

    assert find_config(str(cli_cfg)) == cli_cfg
    assert find_config(None) == env_cfg
    monkeypatch.delenv("CM_CONSOLE_CONFIG")
    assert find_config(None) == Path.cwd() / "cm-console.yaml"
    assert find_config(None).samefile(cwd_cfg)  # type: ignore[union-attr]
    monkeypatch.chdir(tmp_path)
    assert find_config(None) == xdg
    xdg.unlink()
    assert find_config(None) is None


def test_discovery_through_the_cli(tmp_path: Path) -> None:
    """The real entry point, run where only $XDG_CONFIG_HOME has a config."""
    write(tmp_path / "xdg" / "cm-console" / "cm-console.yaml",
          "sources:\n  - {id: from-xdg, type: rss, url: 'https://x.example/feed'}\n")
    write(tmp_path / "work" / "cm-console.yaml",
          "sources:\n  - {id: from-cwd, type: rss, url: 'https://c.example/feed'}\n")
    env = {k: v for k, v in os.environ.items() if k != "CM_CONSOLE_CONFIG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")

    def sources(cwd: Path, *extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "cm_console", *extra, "sources"], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[0]

    assert sources(tmp_path / "work") == "from-cwd"
    assert sources(tmp_path) == "from-xdg"
    other = write(tmp_path / "other.yaml",
                  "sources:\n  - {id: from-flag, type: rss, url: 'https://f.example/feed'}\n")
    assert sources(tmp_path / "work", "--config", str(other)) == "from-flag"


# --------------------------------------------------------------------------- check-config


def run_check(path: Path, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cm_console", "--config", str(path),
                           "check-config"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


EXAMPLE_SECRETS = ("FORUM_API_KEY", "MASTODON_TOKEN", "BLUESKY_APP_PASSWORD", "PR_WEBHOOK_URL",
                   "SMTP_PASSWORD")


def test_check_config_exits_0_on_a_good_file() -> None:
    done = run_check(ROOT / "config.example.yaml", {name: "x" for name in EXAMPLE_SECRETS})
    assert done.returncode == 0, done.stderr
    assert "config.example.yaml: ok (" in done.stdout
    assert done.stderr == ""
    # Without its variables: still ok, with a warning naming each one and its line.
    bare = {k: v for k, v in os.environ.items() if k not in EXAMPLE_SECRETS}
    done = subprocess.run([sys.executable, "-m", "cm_console", "--config",
                           str(ROOT / "config.example.yaml"), "check-config"],
                          capture_output=True, text=True, timeout=60, env=bare)
    assert done.returncode == 0
    assert sorted(line.split("${")[1].split("}")[0] for line in done.stderr.splitlines()) \
        == sorted(EXAMPLE_SECRETS)


def test_check_config_exits_1_listing_every_error(tmp_path: Path) -> None:
    path = write(tmp_path / "cm-console.yaml", (
        "sources:\n"
        "  - id: blog\n"
        "    type: rss\n"
        "    url: file:///etc/passwd\n"
        "    interval: often\n"
        "  - id: masto\n"
        "    type: mastodon\n"
        "    token: abcdef0123456789abcdef\n"
        "team:\n"
        "  - id: ann\n"
        "    rol: agent\n"
    ))
    done = run_check(path)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines == [
        f'{path}:4: sources[0].url: expected an http:// or https:// URL, got '
        f'"file:///etc/passwd" (scheme: file; local files and other schemes are refused)',
        f'{path}:5: sources[0].interval: expected a duration like 5m, got "often"',
        f"{path}:8: warning: sources[1].token: looks like a literal secret; write it as "
        "${ENV_VAR} and set the variable outside the shared file",
        f'{path}:11: team[0].rol: unknown key (did you mean "role"?)',
        f"{path}: 3 error(s)",
    ]
    assert done.stdout == ""


def test_check_config_warnings_alone_still_exit_0(tmp_path: Path) -> None:
    path = write(tmp_path / "cm-console.yaml",
                 "smtp:\n  host: mail.example\n  password: hunter2\n")
    done = run_check(path)
    assert done.returncode == 0
    assert f"{path}:3: warning: smtp.password: looks like a literal secret" in done.stderr
    assert "1 warning(s)" in done.stdout


# --------------------------------------------------------------------------- who am I


def test_resolve_user_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CM_CONSOLE_USER", "from-env")
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(var, "from-os")
    assert resolve_user("from-flag") == "from-flag"
    assert resolve_user(None) == "from-env"
    monkeypatch.setenv("CM_CONSOLE_USER", "")
    assert resolve_user(None) == "from-os"
    monkeypatch.delenv("CM_CONSOLE_USER")
    assert resolve_user(None) == "from-os"


def test_top_level_values_are_checked_too(tmp_path: Path) -> None:
    """undo_window and support_email errors used to be dropped (check-config said ok)."""
    path = tmp_path / "cm-console.yaml"
    path.write_text("undo_window: abc\nsupport_email: [a, b]\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "cm_console", "check-config", "--config",
                          str(path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f'{path}:1: undo_window: expected a duration like 5m, got "abc"' in out.stderr
    assert f"{path}:2: support_email: expected text, got a list" in out.stderr
    path.write_text("undo_window: 2h\nsupport_email: not-an-address\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "cm_console", "--config", str(path),
                          "check-config"], capture_output=True, text=True)
    assert "undo_window: expected between 0s and 1h" in out.stderr
    assert '"not-an-address" is not an e-mail address' in out.stderr


def test_keys_that_clash_or_are_not_key_names_are_errors_with_their_line() -> None:
    """Found by a newcomer: `reply: j` passed check-config and j then opened the reply
    picker instead of moving down; `ctrl+shift+banana` showed up in the footer."""
    messages = errors_of("keys:\n"
                         "  reply: j\n"
                         "  escalate: ctrl+shift+bananas\n"
                         "  tag: '?'\n"
                         "  quit: Q,ctrl+q\n")
    assert messages == [
        'cm-console.yaml:2: keys.reply: "j" is also the key of cursor.down; give one of them '
        "another key",
        'cm-console.yaml:3: keys.escalate: "ctrl+shift+bananas" is not a key name (a '
        "character, or a name like enter, escape, f5, ctrl+r)",
        'cm-console.yaml:4: keys.tag: "?" is also the key of help; give one of them another '
        "key",
    ], messages


def test_keys_textual_keeps_for_itself_are_refused_and_its_names_accepted() -> None:
    """Found in review: ctrl+p (the palette) and ctrl+q (quit) passed, and never fired;
    Textual's own names for keys such as £ (pound_sign) were refused."""
    messages = errors_of("keys:\n  private: ctrl+p\n  reply: ctrl+q\n  note: pound_sign\n"
                         "  tag: ctrl+shift+x\n  assign: f13\n")
    assert messages == [
        'cm-console.yaml:2: keys.private: "ctrl+p" is Textual\'s key for the command '
        "palette; choose another",
        'cm-console.yaml:3: keys.reply: "ctrl+q" is Textual\'s key for quitting the app; '
        "choose another",
    ], messages


def test_unset_references_read_yaml_as_yaml(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: a quoted '#' hid a reference, and a commented one was reported."""
    from cm_console.config import unset_references

    for name in ("CM_T_HOOK", "CM_T_PASS", "CM_T_OLD", "CM_T_NOTE"):
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path / "c.yaml", (
        "escalation:\n"
        "  targets:\n"
        '    - {id: pr, name: "PR desk #1", webhook: "${CM_T_HOOK}"}\n'
        'smtp: {host: h, password: "${CM_T_PASS}"}  # was ${CM_T_OLD}\n'
        "# webhook: ${CM_T_NOTE}\n"))
    assert [(i.line, i.path, i.message.split()[0]) for i in unset_references(path)] == [
        (3, "webhook", "${CM_T_HOOK}"), (4, "password", "${CM_T_PASS}")]
