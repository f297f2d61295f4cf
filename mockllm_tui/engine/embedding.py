"""Deterministic embeddings for any wire format: the same text always gives the same unit vector,
and texts that share words point in similar directions."""

from __future__ import annotations

import hashlib
import math
import re
from array import array

from mockllm_tui.core.conversation import Reply

#: The most dimensions a request may ask for.
MAX_DIMENSIONS = 8192
#: The reply an embedding request plans its faults with (it has no rule).
NO_REPLY = Reply()
_WORDS = re.compile(r"\w+")


def embed(text: str, dimensions: int) -> array[float]:
    """A deterministic unit vector (float32) for text.

    Each word, and the whole text, adds signed ones at hashed positions, so the same text always
    gives the same vector and texts sharing words point in similar directions.
    """
    vector = [0.0] * dimensions
    for feature in [*_WORDS.findall(text.lower()), text]:
        digest = hashlib.blake2b(feature.encode(), digest_size=32).digest()
        for j in range(0, 32, 4):
            bits = int.from_bytes(digest[j : j + 4], "little")
            vector[(bits >> 1) % dimensions] += 1.0 if bits & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        vector[0], norm = 1.0, 1.0
    return array("f", [x / norm for x in vector])
