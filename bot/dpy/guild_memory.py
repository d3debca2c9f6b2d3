"""Less memory for each guild a worker holds, with the same values: most of a worker's memory
is discord.py's Guild objects, one a guild, and at hundreds of thousands of guilds a few
hundred bytes each is most of a pod's memory.

Three things, none of which changes what any attribute reads as:

- `LeanGuild` creates five of a guild's caches only when something uses them: its voice states,
  threads, stage instances, scheduled events and soundboard sounds. discord.py makes an empty
  dict for each in every guild; without the voice-state, scheduled-event and expression intents
  (bot/guildhouse.py's `intents`) four of them stay empty for good, and few servers have
  active threads. An access (read or write) makes the dict, as discord.py would have.
- The bot's own member, the one member each guild keeps, shares one `User` across the guilds,
  as discord.py's user cache shares it when members are cached (with the member cache off, as
  Guildhouse runs, discord.py makes one per guild). A member update changes the shared user in
  place, as with discord.py's cache; a guild whose copy of it differs keeps its own.
- Equal values are one object: a channel's category id is the category's own id, an
  overwrite's id the role's, and values that repeat from guild to guild (the `@everyone` role's
  name, the bot's managed role's, channel names, permissions, afk timeouts) come from one table
  of at most `SHARED_VALUES` values, filled by the first guilds (a value not in it is kept as
  parsed). A channel without permission overwrites gets a shared empty tuple for its list of
  them (discord.py only iterates, indexes and slices it, and makes a new list on an update).

Relies on: `ConnectionState._add_guild_from_data(data)` making every guild the gateway sends (it
calls `Guild(data=..., state=...)` and `_add_guild`), `_get_create_guild(data)` returning the
guild of a GUILD_CREATE, filled; the slots of `Guild` (the five caches and the guild fields
below), `Member._user`, the channels' `_overwrites` (made by `_fill_overwrites`, which assigns a
new list), `category_id` and their other fields below, `_Overwrites`' and `Role`'s fields, and
`BaseUser`'s slots (compared to tell two copies of a user apart). A name that is missing on an
object is skipped, so a field another version drops costs only its sharing.
"""

from __future__ import annotations

from typing import Any

import discord
from discord.abc import _Overwrites
from discord.state import AutoShardedConnectionState
from discord.user import BaseUser

RELIES_ON = (
    "discord.state:ConnectionState._add_guild_from_data(self, data)",
    "discord.state:ConnectionState._add_guild(self, guild)",
    "discord.state:ConnectionState._get_create_guild(self, data)",
    "discord.state:ConnectionState.self_id",
    "discord.guild:Guild._voice_states",
    "discord.guild:Guild._threads",
    "discord.guild:Guild._stage_instances",
    "discord.guild:Guild._scheduled_events",
    "discord.guild:Guild._soundboard_sounds",
    "discord.guild:Guild._channels",
    "discord.guild:Guild._roles",
    "discord.guild:Guild._members",
    "discord.member:Member._user",
    "discord.channel:TextChannel._overwrites",
    "discord.channel:TextChannel.category_id",
    "discord.abc:GuildChannel._fill_overwrites(self, data)",
    "discord.abc:_Overwrites.id",
    "discord.abc:_Overwrites.allow",
    "discord.abc:_Overwrites.deny",
    "discord.role:Role.name",
    "discord.role:Role._permissions",
    "discord.user:BaseUser.__slots__",
)

# How many distinct values the table of shared ones holds at most (about 100 bytes each).
SHARED_VALUES = 4096

_LAZY = ("_voice_states", "_threads", "_stage_instances", "_scheduled_events", "_soundboard_sounds")
# Fields that hold the id of a channel (or role, or the bot) of the same guild.
_GUILD_IDS = (
    "_system_channel_id",
    "_rules_channel_id",
    "_public_updates_channel_id",
    "_afk_channel_id",
    "_widget_channel_id",
    "_safety_alerts_channel_id",
)
_GUILD_VALUES = (
    "afk_timeout",
    "max_members",
    "max_presences",
    "max_video_channel_users",
    "max_stage_video_users",
)
_CHANNEL_VALUES = (
    "name",
    "bitrate",
    "user_limit",
    "rtc_region",
    "slowmode_delay",
    "default_auto_archive_duration",
    "default_thread_slowmode_delay",
)
_ROLE_VALUES = ("name", "_permissions", "_colour", "_secondary_colour", "_tertiary_colour")
_OVERWRITE_VALUES = ("allow", "deny")
_NO_OVERWRITES: tuple[_Overwrites, ...] = ()
_MISSING = object()


def _lazy(name: str) -> property:
    """A property over Guild's slot `name` that makes its dict on first access: an empty dict
    assigned to it is not kept (nothing is stored until something uses it)."""
    slot: Any = vars(discord.Guild)[name]

    def get(self: discord.Guild) -> dict[int, Any]:
        try:
            value = slot.__get__(self, type(self))
        except AttributeError:  # before Guild.__init__ assigned it
            value = None
        if value is None:
            value = {}
            slot.__set__(self, value)
        return value  # type: ignore[no-any-return]

    def set_(self: discord.Guild, value: dict[int, Any]) -> None:
        slot.__set__(self, value if value else None)

    return property(get, set_, doc=f"Guild.{name}, made on first use")


class LeanGuild(discord.Guild):
    """discord.Guild, whose caches of `_LAZY` are made when first used."""

    __slots__ = ()


for _name in _LAZY:
    setattr(LeanGuild, _name, _lazy(_name))


class SharedValues:
    """Equal ints and strings as one object: the first `limit` distinct values seen are kept,
    and a value equal to one of them is given back as that one."""

    def __init__(self, limit: int = SHARED_VALUES) -> None:
        self.limit = limit
        self._table: dict[int | str, int | str] = {}

    def __len__(self) -> int:
        return len(self._table)

    def __call__(self, value: Any) -> Any:
        if type(value) is not int and type(value) is not str:
            return value  # None, a bool, an enum: as it is
        if type(value) is int and -5 <= value <= 256:
            return value  # Python has one of each already
        shared = self._table.get(value)
        if shared is not None and type(shared) is type(value):
            return shared
        if len(self._table) < self.limit:
            self._table[value] = value
        return value


def _share_fields(obj: object, names: tuple[str, ...], shared: SharedValues) -> None:
    for name in names:
        value = getattr(obj, name, _MISSING)
        if value is not _MISSING:
            new = shared(value)
            if new is not value:
                setattr(obj, name, new)


def _share_ids(obj: object, names: tuple[str, ...], ids: dict[int, int]) -> None:
    for name in names:
        value = getattr(obj, name, _MISSING)
        if type(value) is int:
            same = ids.get(value)
            if same is not None and same is not value:
                setattr(obj, name, same)


_USER_FIELDS = tuple(s for s in BaseUser.__slots__ if s != "_state")


def _same_user(a: BaseUser, b: BaseUser) -> bool:
    return all(getattr(a, f, _MISSING) == getattr(b, f, _MISSING) for f in _USER_FIELDS) and type(
        a
    ) is type(b)


class LeanState(AutoShardedConnectionState):
    """discord.py's connection state, whose guilds are `LeanGuild`s, compacted when they arrive
    (the module's docstring says how)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_values = SharedValues()
        self._own_user: discord.User | None = None

    def _add_guild_from_data(self, data: Any) -> discord.Guild:
        guild = LeanGuild(data=data, state=self)
        self._add_guild(guild)
        return guild

    def _get_create_guild(self, data: Any) -> discord.Guild:
        guild = super()._get_create_guild(data)
        self.compact(guild)
        return guild

    def compact(self, guild: discord.Guild) -> None:
        """Share what the guild holds with the other guilds, as the module's docstring says."""
        shared = self.shared_values
        ids: dict[int, int] = {guild.id: guild.id}
        me = guild._members.get(self.self_id) if self.self_id is not None else None
        if me is not None:
            user = me._user
            own = self._own_user
            if own is not None and own is not user and _same_user(own, user):
                me._user = own
            elif own is None or own is not user:
                self._own_user = user  # the first, or a newer copy: later guilds share it
            ids[me._user.id] = me._user.id
        ids.update((cid, c.id) for cid, c in guild._channels.items())
        ids.update((rid, r.id) for rid, r in guild._roles.items())
        _share_ids(guild, _GUILD_IDS, ids)
        _share_fields(guild, _GUILD_VALUES, shared)
        for channel in guild._channels.values():
            _share_ids(channel, ("category_id",), ids)
            _share_fields(channel, _CHANNEL_VALUES, shared)
            overwrites = getattr(channel, "_overwrites", None)
            if overwrites is not None and not overwrites:
                channel._overwrites = _NO_OVERWRITES  # type: ignore[assignment]
            for overwrite in overwrites or ():
                _share_ids(overwrite, ("id",), ids)
                _share_fields(overwrite, _OVERWRITE_VALUES, shared)
        for role in guild._roles.values():
            _share_fields(role, _ROLE_VALUES, shared)
            if role.tags is not None:
                _share_ids(role.tags, ("bot_id",), ids)
