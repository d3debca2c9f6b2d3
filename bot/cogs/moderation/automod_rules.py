"""Automod's pure rules: what a server set (mention spam, invite links, a word list, each with
an action) and whether a message breaks one. No Discord here; the automod cog feeds it the
text of chat messages from the light path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from bot.cogs.moderation.rules import MAX_TIMEOUT, RuleError, bounded, parse_duration

ACTIONS = ("delete", "warn", "timeout")
DEFAULT_TIMEOUT = timedelta(minutes=10)
MAX_WORDS = 100
MAX_WORD = 50
MENTION_LIMITS = (3, 50)

# <@id>, <@!id> (users), <@&id> (roles), and @everyone / @here.
_MENTION = re.compile(r"<@[!&]?(\d{15,21})>|@everyone|@here")
_INVITE = re.compile(
    r"(?:https?://)?(?:www\.)?(?:discord\.gg|discord(?:app)?\.com/invite)/[A-Za-z0-9-]{2,}",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Action:
    name: str  # delete, warn, timeout (the message is deleted in every case)
    timeout: timedelta | None = None  # for timeout

    def describe(self) -> str:
        if self.name == "timeout" and self.timeout:
            return f"delete and time out {int(self.timeout.total_seconds()) // 60}m"
        return {"delete": "delete", "warn": "delete and warn"}.get(self.name, self.name)

    def as_json(self) -> dict[str, Any]:
        seconds = int(self.timeout.total_seconds()) if self.timeout else None
        return {"action": self.name, "seconds": seconds}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Action | None:
        if not data:
            return None
        seconds = data.get("seconds")
        return cls(str(data["action"]), timedelta(seconds=int(seconds)) if seconds else None)


def parse_action(name: str, duration: str | None) -> Action:
    name = name.lower()
    if name not in ACTIONS:
        raise RuleError("The action is one of delete, warn, timeout (or `off`).")
    if name != "timeout":
        if duration:
            raise RuleError(f"`{name}` takes no duration; only `timeout` does.")
        return Action(name)
    span = DEFAULT_TIMEOUT
    if duration:
        span = bounded(parse_duration(duration), MAX_TIMEOUT, what="timeout")
    return Action("timeout", span)


@dataclass(frozen=True)
class Automod:
    """A server's automod rules; all off by default."""

    mention_limit: int | None = None
    mentions: Action | None = None
    invites: Action | None = None
    words: tuple[str, ...] = ()
    words_action: Action = field(default=Action("delete"))
    _words_re: re.Pattern[str] | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.words:
            pattern = r"(?<!\w)(?:" + "|".join(re.escape(w) for w in self.words) + r")(?!\w)"
            object.__setattr__(self, "_words_re", re.compile(pattern, re.IGNORECASE))

    @property
    def active(self) -> bool:
        return bool(self.mentions or self.invites or self.words)

    def with_changes(self, **changes: Any) -> Automod:
        return replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        return {
            "mention_limit": self.mention_limit,
            "mentions": self.mentions.as_json() if self.mentions else None,
            "invites": self.invites.as_json() if self.invites else None,
            "words": list(self.words),
            "words_action": self.words_action.as_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Automod:
        data = data or {}
        return cls(
            mention_limit=data.get("mention_limit"),
            mentions=Action.from_json(data.get("mentions")),
            invites=Action.from_json(data.get("invites")),
            words=tuple(str(w) for w in data.get("words") or ()),
            words_action=Action.from_json(data.get("words_action")) or Action("delete"),
        )

    def describe(self) -> list[str]:
        mentions = (
            f"{self.mention_limit}+ mentions: {self.mentions.describe()}"
            if self.mentions
            else "mention spam: off"
        )
        invites = f"invite links: {self.invites.describe()}" if self.invites else "invites: off"
        words = (
            f"{len(self.words)} word(s): {self.words_action.describe()}"
            if self.words
            else "word list: empty"
        )
        return [mentions, invites, words]


@dataclass(frozen=True)
class Breach:
    rule: str  # mentions, invites, words
    action: Action
    why: str  # for the case's reason


def judge(content: str, rules: Automod) -> Breach | None:
    """The first rule `content` breaks (mentions, then invites, then words), or None."""
    if rules.mentions and rules.mention_limit:
        count = len(_MENTION.findall(content))
        if count >= rules.mention_limit:
            return Breach("mentions", rules.mentions, f"{count} mentions in one message")
    if rules.invites and _INVITE.search(content):
        return Breach("invites", rules.invites, "an invite link")
    if rules._words_re is not None:
        found = rules._words_re.search(content)
        if found:
            return Breach("words", rules.words_action, "a blocked word")
    return None


def check_word(word: str) -> str:
    word = " ".join(word.split()).lower()
    if not 1 <= len(word) <= MAX_WORD:
        raise RuleError(f"A blocked word is 1-{MAX_WORD} characters.")
    return word


def mention_limit(value: int) -> int:
    low, high = MENTION_LIMITS
    if not low <= value <= high:
        raise RuleError(f"The mention limit is a whole number from {low} to {high}.")
    return value
