"""A moderation verdict for one input: every category with a score, flagged ones high and the rest
low, deterministic for the same text."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mockllm_tui.core.media import MODERATION_CATEGORIES

#: Unflagged categories score below this.
LOW_SCORE_CAP = 0.1


@dataclass(frozen=True, slots=True)
class Verdict:
    """Each category's score, in the API's order, and which categories are flagged."""

    scores: dict[str, float]
    flagged: frozenset[str]

    @property
    def any_flagged(self) -> bool:
        """Whether any category is flagged."""
        return bool(self.flagged)


def low_score(text: str, category: str) -> float:
    """A small score (below LOW_SCORE_CAP) from the text and the category."""
    digest = hashlib.blake2b(f"{category}\x1f{text}".encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return round(int.from_bytes(digest, "big") / 2**32 * LOW_SCORE_CAP * 0.99, 6)


def verdict(text: str, flagged: dict[str, float] | None) -> Verdict:
    """The verdict on a text: the flagged categories with their scores, the others low."""
    flagged = flagged or {}
    scores = {c: flagged[c] if c in flagged else low_score(text, c) for c in MODERATION_CATEGORIES}
    return Verdict(scores, frozenset(flagged))
