"""Points: the ledger every feature that moves points goes through, shared by the points and
predictions cogs (which never import each other).

- ledger.py: double-entry transactions in PostgreSQL, applied once per key; the invariants
- earn.py: the daily claim, chat points, an admin's give/take/set
- settings.py: per-server settings of points and predictions (cached, invalidated over Redis)
- board.py: live ranks in Redis for `points top`, rebuilt from the ledger when Redis is empty

See docs/predictions.md.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.points.board import Board
from bot.points.settings import SettingsStore

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


@dataclass
class Services:
    settings: SettingsStore
    board: Board
    users: int = 0  # cogs that started the settings' invalidation

    async def start(self) -> None:
        if self.users == 0:
            await self.settings.start()
        self.users += 1

    async def stop(self) -> None:
        self.users -= 1
        if self.users == 0:
            await self.settings.stop()


_SERVICES: weakref.WeakKeyDictionary[Guildhouse, Services] = weakref.WeakKeyDictionary()


def of(bot: Guildhouse) -> Services:
    """The worker's one settings cache and board, for whichever cog asks first."""
    found = _SERVICES.get(bot)
    if found is None:
        found = Services(
            SettingsStore(bot.pool, bot.redis, bot.keys), Board(bot.pool, bot.redis, bot.keys)
        )
        _SERVICES[bot] = found
    return found
