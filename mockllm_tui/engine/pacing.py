"""Stream pacing as a pure object: when each frame of a stream is due, at a speed that may change live.

Deadlines count from one anchor (a time and the tokens sent by then), so errors never accumulate:
a frame carrying `n` tokens is due when the tokens before it and its own are due at the speed. A
live change of speed re-anchors at the last send, so the new speed applies from the next frame.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Pacer:
    """The deadlines of one stream. `speed` is tokens per second (0: unlimited).

    `fixed` pins the speed (a header or rule set it), so live changes are ignored.
    """

    anchor_time: float
    speed: float
    fixed: bool = False
    anchor_tokens: int = 0
    sent_tokens: int = 0
    last_sent: float = 0.0

    @property
    def unlimited(self) -> bool:
        """True when frames go out as fast as they can be written."""
        return self.speed <= 0

    def due(self, tokens_ahead: int) -> float:
        """The time at which `tokens_ahead` more tokens (after those sent) are due."""
        if self.unlimited:
            return self.anchor_time
        return self.anchor_time + (self.sent_tokens + tokens_ahead - self.anchor_tokens) / self.speed

    def sent(self, tokens: int, now: float) -> None:
        """Record that frames carrying `tokens` tokens went out at `now`."""
        self.sent_tokens += tokens
        self.last_sent = now

    def follow(self, live_speed: float) -> bool:
        """Take a new live speed (unless fixed), re-anchored at the last send. True if it changed."""
        if self.fixed or live_speed == self.speed:
            return False
        self.speed = live_speed
        self.anchor_time = self.last_sent
        self.anchor_tokens = self.sent_tokens
        return True

    def batch_end(self, tokens: list[int], start: int, stop: int, now: float) -> tuple[int, int]:
        """Frames from `start` that are due by `now` go out together (a busy loop catches up instead of
        drifting): the end index (at most `stop`) and the tokens they carry. The first is always taken."""
        end, total = start + 1, tokens[start]
        while end < stop:
            extra = tokens[end]
            if extra and not self.unlimited and self.due(total + extra) > now:
                break
            total += extra
            end += 1
        return end, total
