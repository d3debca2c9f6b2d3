"""The sandbox's world: users, guilds, channels, roles and members, made from a seed.

Objects are kept as Discord-shaped dicts plus a little bookkeeping, and serialised with every
field Discord documents for them (nullable ones as null), since strict clients reject partial
objects. Ids are snowflakes with plausible timestamps; a guild lives on shard
`(guild_id >> 22) % shard_count`, as on Discord.
"""

from __future__ import annotations

import base64
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
# GUILD_CREATE (Gateway Events, Guild Create; IDENTIFY's large_threshold: 50 to 250, default 50)
LARGE_THRESHOLD = 50
MAX_PRESENCE_GUILD = 75_000  # over this, members and presences hold only the bot

# Permission bits (https://discord.com/developers/docs/topics/permissions)
CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_AUDIT_LOG = 1 << 7
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
MANAGE_NICKNAMES = 1 << 27
MANAGE_ROLES = 1 << 28
USE_APPLICATION_COMMANDS = 1 << 31
MODERATE_MEMBERS = 1 << 40
ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
)
MODERATOR_PERMISSIONS = EVERYONE_PERMISSIONS | MANAGE_MESSAGES | KICK_MEMBERS | MODERATE_MEMBERS
BOT_PERMISSIONS = (
    EVERYONE_PERMISSIONS
    | MANAGE_MESSAGES
    | MANAGE_ROLES
    | KICK_MEMBERS
    | BAN_MEMBERS
    | MODERATE_MEMBERS
    | MANAGE_CHANNELS
    | MANAGE_NICKNAMES
    | VIEW_AUDIT_LOG
)

# A member's status as a presence event sets it; "offline" is also how "invisible" shows.
PRESENCE_STATUSES = ("online", "idle", "dnd", "offline")

CHANNEL_TEXT = 0
CHANNEL_DM = 1
CHANNEL_VOICE = 2
CHANNEL_CATEGORY = 4

WORDS = (
    "dragon",
    "dice",
    "raid",
    "loot",
    "quest",
    "guild",
    "arcane",
    "neon",
    "chrome",
    "shadow",
    "runner",
    "tavern",
    "keep",
    "forge",
    "storm",
    "ember",
    "frost",
    "iron",
)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


class Snowflakes:
    """Unique ids: deterministic ones for the world, time-based ones for new objects."""

    def __init__(self) -> None:
        self._increment = 0

    def at(self, ts: float) -> int:
        self._increment = (self._increment + 1) & 0xFFF
        return ((int(ts * 1000) - DISCORD_EPOCH_MS) << 22) | (1 << 17) | self._increment

    def now(self) -> int:
        return self.at(time.time())


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "mfa_enabled": False,
            "banner": None,
            "accent_color": None,
            "locale": "en-US",
            "verified": True,
            "email": None,
            "flags": 0,
            "premium_type": 0,
            "public_flags": 0,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }


@dataclass
class Role:
    id: int
    name: str
    permissions: int
    position: int
    color: int = 0
    hoist: bool = False
    managed: bool = False
    mentionable: bool = False
    bot_id: int | None = None  # a bot's managed role

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "color": self.color,
            "colors": {
                "primary_color": self.color,
                "secondary_color": None,
                "tertiary_color": None,
            },
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:  # `tags` is optional, and present only when it says sth
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Channel:
    id: int
    type: int
    name: str | None
    guild_id: int | None = None
    position: int = 0
    parent_id: int | None = None
    topic: str | None = None
    # [{id, type (0 role, 1 member), allow, deny}]
    overwrites: list[dict[str, Any]] = field(default_factory=list)
    recipients: list[int] = field(default_factory=list)
    last_message_id: int | None = None
    renames: list[float] = field(default_factory=list)
    rate_limit_per_user: int = 0  # slowmode, seconds

    def to_dict(self, world: World) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "flags": 0,
        }
        if self.type == CHANNEL_DM:
            data["recipients"] = [world.users[u].to_dict() for u in self.recipients]
            return data
        data.update(
            {
                "guild_id": str(self.guild_id),
                "name": self.name,
                "position": self.position,
                "permission_overwrites": [
                    {
                        "id": str(o["id"]),
                        "type": o["type"],
                        "allow": str(o["allow"]),
                        "deny": str(o["deny"]),
                    }
                    for o in self.overwrites
                ],
                "parent_id": str(self.parent_id) if self.parent_id else None,
                "nsfw": False,
            }
        )
        if self.type == CHANNEL_TEXT:
            data.update(
                {
                    "topic": self.topic,
                    "rate_limit_per_user": self.rate_limit_per_user,
                    "last_pin_timestamp": None,
                    "default_auto_archive_duration": 1440,
                }
            )
        elif self.type == CHANNEL_VOICE:
            data.update(
                {
                    "bitrate": 64000,
                    "user_limit": 0,
                    "rtc_region": None,
                    "video_quality_mode": 1,
                    "rate_limit_per_user": 0,
                }
            )
        return data


@dataclass
class Member:
    user_id: int
    roles: list[int]
    joined_at: float
    nick: str | None = None
    communication_disabled_until: float | None = None

    def to_dict(self, world: World, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in self.roles],
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": (
                iso(self.communication_disabled_until)
                if self.communication_disabled_until
                else None
            ),
            "avatar_decoration_data": None,
        }
        if with_user:
            data["user"] = world.users[self.user_id].to_dict()
        return data


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role]
    channels: dict[int, Channel]
    members: dict[int, Member]
    bans: dict[int, str | None] = field(default_factory=dict)
    joined_at: float = 0.0
    # Members who are not offline -> their status (set by presence events; nobody at first).
    presences: dict[int, str] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def shard(self, shard_count: int) -> int:
        return (self.id >> 22) % shard_count

    def to_dict(self, world: World, *, with_counts: bool = False) -> dict[str, Any]:
        """The REST guild object; `with_counts`: with its approximate member and presence
        counts (`GET /guilds/{id}?with_counts=true`)."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": [r.to_dict() for r in self.roles.values()],
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(next(iter(self.channels))) if self.channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_presences": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "welcome_screen": None,
            "nsfw_level": 0,
            "stickers": [],
            "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None,
            "home_header": None,
            "region": "deprecated",
            "nsfw": False,
            "incidents_data": None,
        }
        if with_counts:
            data["approximate_member_count"] = len(self.members)
            # Members who are not offline, as presence events set them (the bot is online).
            online = set(self.presences) | ({world.bot.id} & set(self.members))
            data["approximate_presence_count"] = len(online)
        return data

    def presence(self, user_id: int) -> dict[str, Any]:
        """A member's presence object, as PRESENCE_UPDATE and member chunks carry it."""
        status = self.presences.get(user_id, "offline")
        return {
            "user": {"id": str(user_id)},
            "guild_id": str(self.id),
            "status": status,
            "activities": [],
            "client_status": {} if status == "offline" else {"desktop": status},
        }

    def gateway_dict(
        self, world: World, *, with_presences: bool, large_threshold: int = LARGE_THRESHOLD
    ) -> dict[str, Any]:
        """The GUILD_CREATE payload: the guild plus its gateway-only fields. Its `members` and
        `presences` follow Discord's documentation (Gateway Events, Guild Create): without the
        GUILD_PRESENCES intent (`with_presences`), or over 75k members, only the bot and users
        in voice channels (the sandbox keeps no voice states: the bot alone); with it, a large
        guild (more members than IDENTIFY's `large_threshold`) sends only its online members
        and a small one all of them."""
        large = len(self.members) > large_threshold
        if not with_presences or len(self.members) > MAX_PRESENCE_GUILD:
            ids = [world.bot.id]
        elif large:  # the bot is online; the others are online when they have a presence
            ids = [u for u in self.members if u == world.bot.id or u in self.presences]
        else:
            ids = list(self.members)
        members = [self.members[u] for u in ids if u in self.members]
        shown = [m.user_id for m in members] if with_presences else []
        data = self.to_dict(world)
        data.update(
            {
                "joined_at": iso(self.joined_at),
                "large": large,
                "unavailable": False,
                "member_count": len(self.members),
                "voice_states": [],
                "members": [m.to_dict(world) for m in members],
                "channels": [c.to_dict(world) for c in self.channels.values()],
                "threads": [],
                "presences": [self.presence(u) for u in shown if u in self.presences],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )
        return data

    def permissions(self, user_id: int, channel: Channel | None = None) -> int:
        """Discord's permission computation, with channel overwrites."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get(user_id)
        if member is None:
            return 0
        perms = self.everyone.permissions
        for rid in member.roles:
            role = self.roles.get(rid)
            if role is not None:
                perms |= role.permissions
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        if channel is None:
            return perms
        by_id = {o["id"]: o for o in channel.overwrites}
        if self.id in by_id:
            perms = (perms & ~by_id[self.id]["deny"]) | by_id[self.id]["allow"]
        allow = deny = 0
        for rid in member.roles:
            o = by_id.get(rid)
            if o is not None and o["type"] == 0:
                allow |= o["allow"]
                deny |= o["deny"]
        perms = (perms & ~deny) | allow
        o = by_id.get(user_id)
        if o is not None and o["type"] == 1:
            perms = (perms & ~o["deny"]) | o["allow"]
        return perms


def make_token(bot_id: int, rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    first = base64.b64encode(str(bot_id).encode()).decode().rstrip("=")
    second = "".join(rng.choice(alphabet) for _ in range(6))
    third = "".join(rng.choice(alphabet) for _ in range(38))
    return f"{first}.{second}.{third}"


class World:
    def __init__(self, *, guilds: int = 20, members: int = 20, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.ids = Snowflakes()
        start = 1_600_000_000.0  # 2020-09: plausible creation times for the world's objects

        def old_id() -> int:
            return self.ids.at(start + rng.uniform(0, 86400 * 1000))

        self.users: dict[int, User] = {}
        self.bot = User(old_id(), "Guildhouse", bot=True)
        self.users[self.bot.id] = self.bot
        self.application_id = self.bot.id  # as on Discord for bots made since 2018
        self.token = make_token(self.bot.id, rng)
        self.public_key = secrets.token_hex(32)
        self.owner = User(old_id(), "app_owner")
        self.users[self.owner.id] = self.owner

        pool_size = max(members * 3, 10)
        people = [
            User(
                old_id(),
                f"{rng.choice(WORDS)}{rng.choice(WORDS)}{i}",
                global_name=f"{rng.choice(WORDS).title()} {i}",
            )
            for i in range(pool_size)
        ]
        for u in people:
            self.users[u.id] = u

        self.guilds: dict[int, Guild] = {}
        for g in range(guilds):
            # Many small guilds, a few large ones.
            size = members * (8 if rng.random() < 0.1 else 1)
            size = max(3, min(len(people), int(size * rng.uniform(0.5, 1.5))))
            picked = rng.sample(people, size)
            gid = old_id()
            name = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {g}"
            roles = {gid: Role(gid, "@everyone", EVERYONE_PERMISSIONS, 0)}
            mod_role = Role(old_id(), "Moderators", MODERATOR_PERMISSIONS, 1, color=0x2ECC71)
            bot_role = Role(
                old_id(), "Guildhouse", BOT_PERMISSIONS, 2, managed=True, bot_id=self.bot.id
            )
            roles[mod_role.id] = mod_role
            roles[bot_role.id] = bot_role
            channels: dict[int, Channel] = {}
            category = Channel(old_id(), CHANNEL_CATEGORY, "Text Channels", gid, 0)
            channels[category.id] = category
            for pos, cname in enumerate(("general", "dice", "mod-log")):
                ch = Channel(old_id(), CHANNEL_TEXT, cname, gid, pos, parent_id=category.id)
                channels[ch.id] = ch
            mod_log = list(channels.values())[-1]
            # Only moderators (and the bot) can see #mod-log: a real overwrite to honour.
            mod_log.overwrites = [
                {"id": gid, "type": 0, "allow": 0, "deny": VIEW_CHANNEL},
                {"id": mod_role.id, "type": 0, "allow": VIEW_CHANNEL, "deny": 0},
                {"id": bot_role.id, "type": 0, "allow": VIEW_CHANNEL, "deny": 0},
            ]
            voice = Channel(old_id(), CHANNEL_VOICE, "Voice", gid, 10)
            channels[voice.id] = voice
            joined = start + rng.uniform(0, 86400 * 400)
            member_map = {
                u.id: Member(u.id, [], joined + rng.uniform(0, 86400 * 300)) for u in picked
            }
            owner_id = picked[0].id
            member_map[picked[1].id].roles.append(mod_role.id)  # one moderator
            member_map[self.bot.id] = Member(self.bot.id, [bot_role.id], joined)
            self.guilds[gid] = Guild(
                gid, name, owner_id, roles, channels, member_map, joined_at=joined
            )

        self.dm_channels: dict[int, Channel] = {}  # by recipient user id
        # Users who accept no direct messages (from the bot's servers): a DM to them is 50007.
        self.closed_dms: set[int] = set()

    # -- lookups -----------------------------------------------------------------------------

    def channel(self, channel_id: int) -> tuple[Guild | None, Channel] | None:
        for guild in self.guilds.values():
            ch = guild.channels.get(channel_id)
            if ch is not None:
                return guild, ch
        for ch in self.dm_channels.values():
            if ch.id == channel_id:
                return None, ch
        return None

    def dm_channel(self, user_id: int) -> Channel:
        ch = self.dm_channels.get(user_id)
        if ch is None:
            ch = Channel(self.ids.now(), CHANNEL_DM, None, recipients=[user_id])
            self.dm_channels[user_id] = ch
        return ch

    def recommended_shards(self) -> int:
        """Discord recommends about one shard per 1,000 guilds."""
        return max(1, -(-len(self.guilds) // 1000))

    def summary(self, base_url: str) -> dict[str, Any]:
        """What GET /_sandbox/world returns."""
        return {
            "bot": self.bot.to_dict(),
            "application_id": str(self.application_id),
            "token": self.token,
            "api_url": f"{base_url}/api/v10",
            "guilds": [
                {
                    "id": str(g.id),
                    "name": g.name,
                    "owner_id": str(g.owner_id),
                    "channels": [
                        {
                            "id": str(c.id),
                            "name": c.name,
                            "type": c.type,
                            "parent_id": str(c.parent_id) if c.parent_id else None,
                        }
                        for c in g.channels.values()
                    ],
                    "roles": [
                        {
                            "id": str(r.id),
                            "name": r.name,
                            "permissions": str(r.permissions),
                            "position": r.position,
                        }
                        for r in g.roles.values()
                    ],
                    "member_ids": [str(m) for m in g.members if m != self.bot.id],
                    "members": [
                        {"id": str(m.user_id), "roles": [str(r) for r in m.roles]}
                        for m in g.members.values()
                        if m.user_id != self.bot.id
                    ],
                }
                for g in self.guilds.values()
            ],
        }
