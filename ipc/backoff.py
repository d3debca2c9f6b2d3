"""Delays between retries, shared by every loop that waits for PostgreSQL or Redis to come back
(ipc's pub/sub subscriber; the bot's job runner, XP flusher and predictions clock through
bot/outages.py). In ipc because ipc may not import the bot, while the bot may import ipc."""

from __future__ import annotations

import random


class Backoff:
    """Delays between retries: doubling from `first` up to `cap`, each drawn at random from its
    upper half, so that the workers of a cluster don't all knock at once when a server comes
    back. The cap is short: the retry is also how a loop finds out that the server is back."""

    def __init__(self, first: float = 0.5, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._next = self.first
