"""Pure leveling rules: the level curve, how much XP a message earns, streaks, achievements.

The level curve is MEE6's: going from level `l` to `l + 1` takes ``5*l**2 + 50*l + 100`` XP,
so level 1 needs 100 XP in all, level 5 needs 1,150, level 10 needs 4,675 and level 50 needs
268,375.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

MAX_LEVEL = 1000


def xp_for_next(level: int) -> int:
    """XP needed to go from `level` to `level + 1`."""
    if level < 0:
        raise ValueError("level must be >= 0")
    return 5 * level * level + 50 * level + 100


def total_xp_for(level: int) -> int:
    """Total XP at which `level` is reached (0 for level 0)."""
    if level < 0:
        raise ValueError("level must be >= 0")
    n = level
    # sum_{l=0}^{n-1} 5l^2 + 50l + 100
    return 5 * (n - 1) * n * (2 * n - 1) // 6 + 25 * n * (n - 1) + 100 * n


_THRESHOLDS = [total_xp_for(level) for level in range(MAX_LEVEL + 1)]


def level_for(xp: float) -> int:
    """The level a member with `xp` total XP has."""
    if xp < 0:
        return 0
    return min(MAX_LEVEL, bisect.bisect_right(_THRESHOLDS, xp) - 1)


@dataclass(frozen=True)
class Progress:
    level: int
    xp: int  # total
    into_level: int  # XP earned since this level was reached
    needed: int  # XP from this level to the next

    @property
    def fraction(self) -> float:
        return self.into_level / self.needed if self.needed else 1.0


def progress(xp: float) -> Progress:
    total = int(xp)
    level = level_for(total)
    start = total_xp_for(level)
    return Progress(level, total, total - start, xp_for_next(level))


def bar(fraction: float, width: int = 12) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def multiplier(
    channel_id: int,
    parent_id: int | None,
    role_ids: Iterable[int],
    channel_multipliers: Mapping[int, float],
    role_multipliers: Mapping[int, float],
) -> float:
    """The XP multiplier of a message: the channel's (or its category's) times the largest of
    the member's roles' (1 for none).

    A multiplier of 0 means no XP: a channel at 0 earns nothing, and a member with any role
    at 0 earns nothing anywhere (no-XP roles win over boosts).
    """
    chan = channel_multipliers.get(channel_id)
    if chan is None and parent_id is not None:
        chan = channel_multipliers.get(parent_id)
    chan = 1.0 if chan is None else chan
    roles = [role_multipliers[r] for r in role_ids if r in role_multipliers]
    if any(m == 0 for m in roles):
        return 0.0
    role = max(roles) if roles else 1.0
    return chan * role


def message_xp(min_xp: int, max_xp: int, mult: float, rng: random.Random) -> int:
    """A random amount in [min_xp, max_xp], times `mult`, rounded."""
    if mult <= 0:
        return 0
    return max(0, round(rng.randint(min_xp, max_xp) * mult))


def streak_length(days: Iterable[date], today: date) -> int:
    """Consecutive days up to and including `today` on which the member was active. Today
    counts as active (the caller is awarding XP now)."""
    active = set(days)
    active.add(today)
    n = 0
    d = today
    while d in active:
        n += 1
        d -= timedelta(days=1)
    return n


def current_streak(days: Iterable[date], today: date) -> int:
    """The streak a member has now: ending today if they were active today, else ending
    yesterday (it is not broken until today is over); 0 if neither."""
    active = set(days)
    if today in active:
        return streak_length(active, today)
    yesterday = today - timedelta(days=1)
    return streak_length(active, yesterday) if yesterday in active else 0


# -- achievements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Achievement:
    key: str
    name: str
    description: str
    metric: str  # messages, level, streak, commands, roll_successes
    target: int


CATALOGUE: tuple[Achievement, ...] = (
    Achievement("first_message", "First words", "Earn XP for a message", "messages", 1),
    Achievement("level_5", "Regular", "Reach level 5", "level", 5),
    Achievement("level_10", "Fixture", "Reach level 10", "level", 10),
    Achievement("level_25", "Veteran", "Reach level 25", "level", 25),
    Achievement("level_50", "Legend", "Reach level 50", "level", 50),
    Achievement("streak_3", "Three in a row", "Be active 3 days in a row (UTC days)", "streak", 3),
    Achievement("streak_7", "A week straight", "Be active 7 days in a row", "streak", 7),
    Achievement("streak_30", "A month straight", "Be active 30 days in a row", "streak", 30),
    Achievement("commands_10", "Button pusher", "Run 10 commands", "commands", 10),
    Achievement("commands_100", "Power user", "Run 100 commands", "commands", 100),
    Achievement(
        "roll_10_successes",
        "Critical mass",
        "Roll 10 successes in one roll",
        "roll_successes",
        10,
    ),
)
BY_KEY = {a.key: a for a in CATALOGUE}


def reached(metric: str, value: int) -> list[Achievement]:
    """Achievements of `metric` whose target `value` meets."""
    return [a for a in CATALOGUE if a.metric == metric and value >= a.target]


def reward_roles(rewards: Mapping[int, int], level: int) -> tuple[int | None, list[int]]:
    """For a member at `level`: the reward role of the highest reward level reached, and the
    reward roles of lower levels (which `replace_rewards` removes)."""
    earned = sorted((lvl, role) for lvl, role in rewards.items() if lvl <= level)
    if not earned:
        return None, []
    top = earned[-1][1]
    return top, [role for _, role in earned[:-1] if role != top]
