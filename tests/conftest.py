"""Shared fixtures: a real loopback feed server and configs written to real files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from cm_console.config import Config, load_config
from cm_console.feedserver import FeedServer
from cm_console.store import Store


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Write a cm-console.yaml from keyword data and load it the way users do."""

    def make(sources: list[dict] | None = None, **extra: object) -> Config:
        data: dict[str, object] = {"store": str(tmp_path / "store.db.json"),
                                   "poll": {"timeout": "5s", "parse_workers": 0}}
        data.update(extra)
        data["sources"] = sources or []
        path = tmp_path / "cm-console.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return load_config(path)

    return make


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield Store(tmp_path / "store.db.json")
