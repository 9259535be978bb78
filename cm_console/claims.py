"""Claims: "alice is replying" — so two agents don't answer the same post twice.

Opening the reply editor claims the item for a few minutes; every console shows the claim,
and sending warns (never blocks) when someone else holds a claim or already answered since
the editor opened. Claims expire by themselves: a crashed console blocks nobody.
"""

from __future__ import annotations

import time

from .store import Store

__all__ = ["CLAIM_SECONDS", "claim", "conflicts", "release"]

CLAIM_SECONDS = 300.0


def claim(store: Store, item_id: str, actor: str, seconds: float = CLAIM_SECONDS) -> bool:
    """Tell the team "I'm replying to this" for a few minutes (expires by itself).

    A teammate's live claim is left in place (False): replacing it made the first writer
    vanish from everyone's screen, and sending then dropped the claim for both.
    """
    now = time.time()
    with store.transaction() as tx:
        held = store.claims().get(item_id)
        if held is not None and held.get("actor") != actor and held.get("until", 0) > now:
            return False
        tx.put("claims", item_id, {"actor": actor, "since": now, "until": now + seconds})
    return True


def release(store: Store, item_id: str, actor: str) -> None:
    """Drop my claim (sent or abandoned); someone else's claim is left alone."""
    with store.transaction() as tx:
        current = store.claims().get(item_id)
        if current is not None and current.get("actor") == actor:
            tx.delete("claims", item_id)


def conflicts(store: Store, item_id: str, actor: str, since: float) -> list[str]:
    """Warnings before sending: another agent holds a claim, or answered after ``since``."""
    warnings = []
    held = store.claims().get(item_id)
    if held is not None and held.get("actor") != actor:
        warnings.append(f"{held['actor']} is replying to this right now")
    for event in store.events(item=item_id):
        if event.ts > since and event.actor != actor and event.action in (
            "reply", "route_private", "escalate"
        ):
            minutes = max(1, int((time.time() - event.ts) // 60))
            warnings.append(f"{event.actor} already answered ({event.action.replace('_', ' ')}) "
                            f"{minutes}m ago")
    return warnings
