"""Answering from the inbox: reply, route private, escalate — picker, editor, review.

A mixin of the inbox screen: the flows need the screen's current item and its app, and
they run as workers so each dialog can be awaited in order (push_screen_wait). Every
decision is the core's (templates, actions, approvals, claims); this is only the dialog.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work

from .. import actions, approvals, claims, templates
from ..config import Template
from ..models import Item
from ..sanitize import one_line
from ..store import Store
from .compose import ComposeScreen, ReviewScreen, TemplatePickerScreen
from .screens import PickScreen, PromptScreen

if TYPE_CHECKING:
    from .app import CMConsoleApp


def _submit(store: Store, item_id: str, op: str, payload: dict, actor: str) -> str:
    """approvals.submit in the (store, *args, actor) order that perform() uses."""
    return approvals.submit(store, item_id, actor, op, payload)


class AnsweringMixin:
    """The r, P and e flows of the inbox screen."""

    if TYPE_CHECKING:  # provided by the inbox screen and by Textual
        cm: CMConsoleApp
        app: Any

        def current(self) -> Item | None: ...

        def notify(self, *args: Any, **kwargs: Any) -> None: ...


    def _render_template(self, item: Item, template: Template) -> str:
        config = self.cm.config
        member = config.member(self.cm.actor)
        source = config.source(item.source)
        values = templates.values_for(item, self.cm.actor, member.name if member else
                                      self.cm.actor, source.label if source else item.source)
        return templates.render(template, values)

    async def _draft(self, item: Item, title: str, visibility: str) -> tuple[Template | None,
                                                                             str] | None:
        """Pick a template, then edit its rendering. None when the agent cancels."""
        config = self.cm.config
        fitting = templates.templates_for(config, item.source_type, visibility)
        template: Template | None = None
        text = ""
        if fitting:
            template = await self.app.push_screen_wait(TemplatePickerScreen(
                f"{title}: choose a {visibility} template", fitting,
                lambda t: self._render_template(item, t)))
            if template is None:
                return None
            try:
                text = self._render_template(item, template)
            except templates.TemplateError as exc:
                self.notify(str(exc), severity="error")
                return None
        limit = templates.length_limit(template, config.source(item.source),
                                       item.source_type, item) if visibility == "public" else None
        edited = await self.app.push_screen_wait(ComposeScreen(
            f"{title} — {one_line(item.author, 40) or 'no author'} on {item.source}", text, limit,
            lambda t: templates.length(t, item.source_type)))
        return None if edited is None else (template, edited)

    async def _edit_text(self, item: Item, title: str, text: str, template: Template | None,
                         visibility: str) -> str:
        """The editor again on ``text``; esc there keeps the text as it was."""
        limit = templates.length_limit(template, self.cm.config.source(item.source),
                                       item.source_type, item) if visibility == "public" else None
        edited = await self.app.push_screen_wait(ComposeScreen(
            title, text, limit, lambda t: templates.length(t, item.source_type)))
        return text if edited is None else edited

    def _claim(self, item: Item) -> float:
        """Claim the item while I write; say so if a teammate is already on it."""
        held = self.cm.store.claims().get(item.id)
        if held is not None and held.get("actor") != self.cm.actor:
            who = self.cm.member_names.get(held["actor"], held["actor"])
            self.notify(f"{who} is replying to this already; you can still answer.",
                        severity="warning", timeout=6)
        self.cm.perform(claims.claim, item.id)
        return time.time()

    def _warnings(self, item: Item, opened: float) -> Text:
        text = Text()
        for warning in claims.conflicts(self.cm.store, item.id, self.cm.actor, opened):
            text.append(f"⚠ {warning}\n", style="bold red")
        return text

    @work(exclusive=True, group="compose")
    async def action_reply(self) -> None:
        item = self.current()
        if item is None:
            return
        opened = self._claim(item)
        try:
            await self._reply_flow(item, opened)
        finally:
            claims.release(self.cm.store, item.id, self.cm.actor)
            self.cm.refresh_inbox()

    async def _reply_flow(self, item: Item, opened: float) -> None:
        written = await self._draft(item, "Reply", "public")
        while written is not None:
            template, text = written
            on_platform = actions.platform_can(self.cm.config, item, "reply")
            summary = self._warnings(item, opened)
            summary.append(f"Reply to {one_line(item.author, 60) or 'a post'} on {item.source}\n",
                           style="bold")
            summary.append(f"{one_line(item.url, 200)}\n\n", style="dim")
            summary.append(actions.outgoing_text(item, "reply", text) + "\n\n")
            if approvals.needs_approval(self.cm.config, self.cm.actor, template):
                summary.append("Goes to a lead for approval first: nothing leaves until it is "
                               "approved.", style="italic")
            elif on_platform:
                wait = self.cm.config.undo_window
                summary.append(f"Posted on {item.source_type} after {wait:.0f}s (u undoes until "
                               "then).", style="italic")
            else:
                summary.append("No reply API for this source: the text goes to the clipboard "
                               "and the post opens in your browser; the item is marked replied.",
                               style="italic")
            choice = await self.app.push_screen_wait(ReviewScreen(summary))
            if choice == "edit":  # esc in the editor comes back here with the text kept
                written = (template, await self._edit_text(item, "Reply", text, template,
                                                           "public"))
                continue
            if choice != "send":
                self.notify("Reply discarded.", timeout=2)
                return
            if approvals.needs_approval(self.cm.config, self.cm.actor, template):
                self.cm.perform(_submit, item.id, "reply", {
                    "text": text, "template": template.id if template else ""})
                self.notify("Sent for approval: a lead reviews it before it goes out.",
                            timeout=5)
                return
            sent = self.cm.perform(partial(actions.reply, config=self.cm.config), item.id,
                                   text, template=template)
            if sent is not None and sent.mode == "outbox":
                self.notify(f"Reply queued for {item.source_type}: it is posted in "
                            f"{self.cm.config.undo_window:.0f}s (u undoes).", timeout=5)
            elif sent is not None:
                self.app.copy_to_clipboard(sent.text)
                if item.url:
                    self.app.open_url(item.url)
                self.notify("Reply copied: paste it in the browser tab. Marked replied "
                            "(u undoes).", timeout=5)
            return

    @work(exclusive=True, group="compose")
    async def action_route_private(self) -> None:
        item = self.current()
        if item is None:
            return
        opened = self._claim(item)
        try:
            await self._private_flow(item, opened)
        finally:
            claims.release(self.cm.store, item.id, self.cm.actor)
            self.cm.refresh_inbox()

    async def _private_flow(self, item: Item, opened: float) -> None:
        config = self.cm.config
        direct = actions.platform_can(config, item, "private")
        public_api = actions.platform_can(config, item, "reply")
        if not direct and not config.support_email:
            self.notify("No private channel for this source and no support_email in the config.",
                        severity="error")
            return
        public = await self._draft(item, "Public acknowledgement", "public")
        if public is None:
            return
        private = await self._draft(item, "Private message", "private")
        if private is None:
            return
        while True:
            summary = self._warnings(item, opened)
            where = f"posted on {item.source_type}" if public_api else "clipboard + browser"
            summary.append(f"Public acknowledgement ({where}):\n", style="bold")
            summary.append(actions.outgoing_text(item, "reply", public[1]) + "\n\n")
            channel = (f"a private message on {item.source_type}" if direct
                       else f"an e-mail hand-off to {config.support_email}")
            summary.append(f"Private: {channel}\n", style="bold")
            summary.append(actions.outgoing_text(item, "private", private[1]) + "\n\n")
            if approvals.needs_approval(config, self.cm.actor, public[0], private[0]):
                summary.append("Goes to a lead for approval first: nothing leaves until it "
                               "is approved.", style="italic")
            else:
                summary.append(f"Leaves after {config.undo_window:.0f}s (u undoes until then).",
                               style="italic")
            choice = await self.app.push_screen_wait(ReviewScreen(summary))
            if choice == "edit":
                # Back to the text, never to nothing: what was typed survives (esc in the
                # editor returns here unchanged).
                part = await self.app.push_screen_wait(PickScreen("Edit which text?", [
                    ("private", "the private message"),
                    ("public", "the public acknowledgement")]))
                if part == "public":
                    public = (public[0], await self._edit_text(
                        item, "Public acknowledgement", public[1], public[0], "public"))
                elif part == "private":
                    private = (private[0], await self._edit_text(
                        item, "Private message", private[1], private[0], "private"))
                continue
            if choice != "send":
                self.notify("Nothing sent.", timeout=2)
                return
            break
        if approvals.needs_approval(config, self.cm.actor, public[0], private[0]):
            self.cm.perform(_submit, item.id, "route_private", {
                "public_text": public[1], "private_text": private[1],
                "public_template": public[0].id if public[0] else "",
                "private_template": private[0].id if private[0] else ""})
            self.notify("Sent for approval: a lead reviews it before it goes out.", timeout=5)
            return
        sent = self.cm.perform(partial(actions.route_private, config=config), item.id,
                               public_text=public[1], private_text=private[1],
                               public_template=public[0], private_template=private[0])
        if sent is None:
            return
        if sent.mode == "clipboard":
            self.app.copy_to_clipboard(sent.text)
            if item.url:
                self.app.open_url(item.url)
            ack = "acknowledgement copied to paste"
        else:
            ack = "acknowledgement queued"
        self.notify(f"Routed private: {ack}, private message queued "
                    f"({config.undo_window:.0f}s to undo with u).", timeout=5)

    @work(exclusive=True, group="compose")
    async def action_escalate(self) -> None:
        item = self.current()
        if item is None:
            return
        config = self.cm.config
        if not config.escalation_targets:
            self.notify("No escalation targets in the config (escalation.targets).",
                        severity="error")
            return
        choices = []
        for t in config.escalation_targets:
            routes = (["webhook"] if t.webhook else []) + t.email
            choices.append((t.id, f"{t.name}  ({', '.join(routes)})"))
        target = await self.app.push_screen_wait(PickScreen("Escalate to", choices))
        if not target:
            return
        reason: str | None = ""
        while reason is not None and not reason.strip():
            reason = await self.app.push_screen_wait(PromptScreen(
                "Why? (the target sees this with the post)",
                "an escalation needs a reason · esc cancels", placeholder="reason"))
        if reason is None:
            return
        levels = [("normal", "normal"), ("high", "high"), ("urgent", "urgent"),
                  ("low", "low (no rush)")]
        # The item's own priority (a rule may have made it urgent) is the default: enter
        # must never quietly lower it.
        levels.sort(key=lambda level: level[0] != item.priority)
        priority = await self.app.push_screen_wait(PickScreen("Priority", levels))
        if not priority:
            return
        target_name = next((t.name for t in config.escalation_targets if t.id == target),
                           target)
        while True:
            summary = Text()
            summary.append(f"Escalate to {target_name} ({priority})\n\n", style="bold")
            summary.append(f"Reason: {reason}\n")
            summary.append(f"Post: {one_line(item.title, 120)}\n{one_line(item.url, 200)}\n\n")
            summary.append(f"Leaves after {config.undo_window:.0f}s (u undoes until then).",
                           style="italic")
            choice = await self.app.push_screen_wait(ReviewScreen(summary))
            if choice == "edit":  # edit the reason; esc or an empty one keeps it as it was
                edited = await self.app.push_screen_wait(PromptScreen(
                    "Why? (the target sees this with the post)", "esc keeps it as it was",
                    value=reason, placeholder="reason"))
                if edited and edited.strip():
                    reason = edited
                continue
            if choice != "send":
                self.notify("Nothing sent.", timeout=2)
                return
            break
        sent = self.cm.perform(partial(actions.escalate, config=config), item.id, target,
                               reason, priority=priority)
        if sent is not None:
            self.notify(f"Escalated to {target}: {len(sent.outbox)} message(s) queued "
                        f"({config.undo_window:.0f}s to undo with u).", timeout=5)
