"""The dashboard: the report's figures for a period, as terminal charts, kept current."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, Sparkline, Static

from ..reports import build_report, human
from ..sanitize import one_line

PERIODS = {"1": ("last 24 hours", 86400.0), "7": ("last 7 days", 7 * 86400.0),
           "3": ("last 30 days", 30 * 86400.0)}


def bars(values: dict[str, int], width: int = 18, limit: int = 8) -> Text:
    """Horizontal bars in text: label, bar, count."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not values:
        text.append("nothing in this period\n", style="dim")
        return text
    peak = max(values.values()) or 1
    for label, value in list(values.items())[:limit]:
        size = max(1, round(width * value / peak))
        text.append(f"{one_line(label, 12):<12} ")
        text.append("█" * size, style="bold")
        text.append(f" {value}\n")
    return text


class DashboardScreen(Screen[None]):
    """Volume, sentiment, response times, SLA and escalations for a chosen period."""

    BINDINGS = [
        Binding("escape,q", "dismiss_screen", "Back", id="dashboard.back"),
        Binding("1", "period('1')", "24 h", id="dashboard.day"),
        Binding("7", "period('7')", "7 days", id="dashboard.week"),
        Binding("3", "period('3')", "30 days", id="dashboard.month"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.period = "7"
        self.figures: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Label(id="screen-title")
        with VerticalScroll(id="dashboard"):
            yield Static(id="kpis")
            yield Label("Items per day")
            yield Sparkline([], id="volume-spark")
            yield Static(id="volume-days")
            with Horizontal(classes="dash-row"):
                with Vertical(classes="dash-cell"):
                    yield Label("By source", classes="dash-head")
                    yield Static(id="by-source")
                with Vertical(classes="dash-cell"):
                    yield Label("Sentiment", classes="dash-head")
                    yield Static(id="by-sentiment")
            with Horizontal(classes="dash-row"):
                with Vertical(classes="dash-cell"):
                    yield Label("First response (median, ×answered)", classes="dash-head")
                    yield Static(id="response")
                with Vertical(classes="dash-cell"):
                    yield Label("Escalations by target", classes="dash-head")
                    yield Static(id="escalations")
        yield Footer()

    def on_mount(self) -> None:
        self.recompute()

    def action_period(self, key: str) -> None:
        self.period = key
        self.recompute()

    @work(thread=True, exclusive=True, group="dashboard", exit_on_error=False)
    def recompute(self) -> None:
        """Figures are computed off the UI thread (a 100k-item store takes seconds)."""
        app: Any = self.app
        label, span = PERIODS[self.period]
        now = time.time()
        data = build_report(app.store, app.config, now - span, now + 1, now).data
        self.app.call_from_thread(self.show, label, data)

    def show(self, label: str, d: dict[str, Any]) -> None:
        self.figures = d
        self.query_one("#screen-title", Label).update(
            Text(f"Dashboard · {label} · 1/7/3 change the period"))
        fr = d["first_response"]
        kpis = Text()
        for value, name in ((str(d["items"]), "items"),
                            (human(fr["median_seconds"]), "median first response"),
                            (human(fr["p90_seconds"]), "p90"),
                            (str(fr["unanswered"]), "unanswered"),
                            (str(d["sla"]["breaches"]), "SLA breaches"),
                            (str(d["escalations"]["total"]), "escalations"),
                            (str(d["routed_private"]), "routed private")):
            # No-break spaces inside a figure: a line may wrap between figures, never in one.
            kpis.append(f"{value}", style="bold")
            kpis.append(f"\u00a0{name.replace(' ', chr(0xA0))}   ")
        self.query_one("#kpis", Static).update(kpis)
        days = d["volume"]["by_day"]
        spark = self.query_one("#volume-spark", Sparkline)
        spark.display = len(days) > 1  # one day is a solid block that says nothing
        spark.data = list(days.values()) or [0]
        self.query_one("#volume-days", Static).update(Text(
            "  ".join(f"{day[5:]} {n}" for day, n in list(days.items())[-14:])
            or "no items in this period", style="dim"))
        self.query_one("#by-source", Static).update(bars(d["volume"]["by_source"]))
        self.query_one("#by-sentiment", Static).update(bars(d["volume"]["by_sentiment"]))
        # Short enough for half of an 80-column screen: "mastodon      6m  ×3".
        response = Text(no_wrap=True, overflow="ellipsis")
        for source, t in fr["by_source"].items():
            response.append(f"{one_line(source, 12):<12} {human(t['median_seconds']):>7}  "
                            f"×{t['count']}\n")
        self.query_one("#response", Static).update(response or Text("no answers yet",
                                                                    style="dim"))
        self.query_one("#escalations", Static).update(bars(d["escalations"]["by_target"]))

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)
