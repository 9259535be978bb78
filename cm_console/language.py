"""A small language guess for routing rules (``match: {language: [de]}``).

Counts very common function words of a few languages in the title and summary. It is meant
for routing ("German posts go to Bo"), not linguistics: short or mixed texts get no guess
("") rather than a wrong one. Runs in the parse workers beside sentiment.
"""

from __future__ import annotations

import re

__all__ = ["LANGUAGES", "guess"]

_WORDS = {
    "en": "the and is are was to of in that it for you with this have not but on my".split(),
    "de": "der die das und ist nicht ich ein eine mit zu den auf sie es für von wir".split(),
    "fr": "le la les et est une des que pas pour dans je vous il ce sur avec mais".split(),
    "es": "el la los las y es una que no por para con en un lo se pero mi muy".split(),
    "it": "il la che non di una per sono è con mi ma del della gli le questo".split(),
    "nl": "de het een en is niet ik van dat op te zijn met voor maar ook wat".split(),
    "pt": "o a os as e é um uma que não por para com em do da mas muito".split(),
}
LANGUAGES = tuple(_WORDS)
_SETS = {lang: frozenset(words) for lang, words in _WORDS.items()}
_TOKEN = re.compile(r"[^\W\d_]+", re.UNICODE)


def guess(text: str) -> str:
    """ISO 639-1 code of the most likely language, or "" when unsure."""
    tokens = [t.lower() for t in _TOKEN.findall(text[:1000])]
    if len(tokens) < 4:
        return ""
    hits = {lang: sum(1 for t in tokens if t in words) for lang, words in _SETS.items()}
    ranked = sorted(hits.items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 2 or top < second * 1.5:
        return ""
    return best
