"""The personal settings file: identity, keys and theme that stay out of the team's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cm_console.config import ConfigError, load_local, resolve_user


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    settings = load_local(tmp_path / "nope.yaml")
    assert (settings.user, settings.keys, settings.theme) == ("", {}, "")


def test_user_keys_and_theme_are_read(tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text("user: alice\nkeys:\n  done: x\ntheme: gruvbox\n", encoding="utf-8")
    settings = load_local(path)
    assert settings.user == "alice"
    assert settings.keys == {"done": "x"}
    assert settings.theme == "gruvbox"


def test_identity_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "local.yaml"
    path.write_text("user: alice\n", encoding="utf-8")
    local = load_local(path)
    monkeypatch.delenv("CM_CONSOLE_USER", raising=False)
    assert resolve_user(None, local) == "alice"
    monkeypatch.setenv("CM_CONSOLE_USER", "bob")
    assert resolve_user(None, local) == "bob"
    assert resolve_user("carol", local) == "carol"


def test_mistakes_name_the_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text("user: alice\nkeys:\n  dnoe: x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_local(path)
    assert f"{path}:3: keys.dnoe: unknown key" in str(err.value)
    assert "did you mean" in str(err.value)


def test_a_personal_key_that_clashes_with_the_teams_is_dropped_with_a_notice() -> None:
    """Found in review: local.yaml clashes were never checked (`reply: j` broke j)."""
    from cm_console.keymap import merge_personal_keys

    keys, notices = merge_personal_keys({"reply": "ctrl+r"}, {"tag": "r", "note": "j"},
                                        "local.yaml")
    assert keys == {"reply": "ctrl+r", "tag": "r"}  # r is free once the team moved reply
    assert notices == ['local.yaml: keys.note: "j" is also the key of cursor.down; give one '
                       "of them another key. Ignored."]
