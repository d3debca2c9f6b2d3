"""A console's connection to the sandbox: where it speaks and as whom, the control API and the
REST calls it makes as the bot's client would, and following the channel."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TextIO

import aiohttp
import orjson

from cluster.console.errors import ChatError, InputError
from cluster.console.files import measure, refusal
from cluster.console.markup import Directory, Style, display_name, mentioned_users
from cluster.console.members import pick_member, standing_of
from cluster.console.rate_limits import RateLimitWatch
from cluster.console.screen import Screen

ANSWER_WAIT = 15.0  # s a line that asks the bot something waits for its first answer
SLOW = 0.75  # s after which a missing answer is looked into (is the bot rate limited?)
# What the bot posts in answer to something (an edit, a reaction or a deletion follows one).
ANSWERS = ("message", "interaction_response", "followup", "modal")
MESSAGES = "/_sandbox/messages"  # a member's message (its refusals are said as a client says them)


class Session:
    """One member in one channel of the sandbox: setting up, the control API, and what the bot
    sends there, followed through the outbox (long-polled) and printed. Console (console.py)
    adds what you type."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        *,
        out: TextIO,
        info: TextIO,
        style: Style,
        interactive: bool,
        limits: RateLimitWatch | None = None,
    ) -> None:
        self.http = http
        self.base = base
        self.out = out
        self.info = info
        self.style = style
        self.interactive = interactive
        self.limits = limits
        self.names = Directory()
        self.screen = Screen(self.names, style)
        self.channel_id = 0
        self.user_id = 0
        self.guild: dict[str, Any] = {}
        self.world: dict[str, Any] = {}
        self.commands: list[dict[str, Any]] | None = None
        self.after = 0
        self.answers = 0  # things the bot has sent since the console started
        self.last_output = time.monotonic()  # when the bot last said something, or you did
        # When each line that asked the bot something was sent, oldest first; each thing the
        # bot posts answers the oldest (edits answer nothing: they follow an answer).
        self.asks: deque[float] = deque()
        self.changed = asyncio.Event()
        self.mine: set[str] = set()  # interaction ids of this console's commands and clicks
        self.form: dict[str, Any] | None = None  # the form the bot opened for this user
        self._api_room: dict[str, tuple[int, float]] = {}  # REST bucket -> (remaining, until)

    # -- output --

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out, flush=True)

    def tell(self, text: str) -> None:
        self.say(self.style.notice("· " + text))

    # -- setting up --

    async def setup(
        self, channel: int | None, user: int | None, standing: str, history: int
    ) -> None:
        self.world = await self._get("/_sandbox/world")
        guilds = [g for g in self.world.get("guilds") or [] if isinstance(g, dict)]
        if not guilds:
            raise ChatError("the sandbox has no servers")
        self.guild, self.channel_id = self._place(guilds, channel)
        note = ""
        if user is None:
            user, note = pick_member(self.guild, standing)
        members = {int(m) for m in self.guild.get("member_ids") or []}
        if members and user not in members:
            raise ChatError(f"user {user} is not a member of {self.guild.get('name')}")
        self.user_id = user
        bot = self.world.get("bot") or {}
        self.screen.bot_name = display_name(bot) if bot else "the bot"
        self.names.users[int(bot.get("id", 0))] = self.screen.bot_name
        self.names.roles.update(
            {int(r["id"]): str(r["name"]).lstrip("@") for r in self.guild.get("roles") or []}
        )
        self.names.roles[int(self.guild["id"])] = "everyone"
        self.names.channels.update(
            {int(c["id"]): str(c["name"]) for c in self.guild.get("channels") or []}
        )
        for m in self.guild.get("members") or []:
            name = m.get("nick") or m.get("global_name") or m.get("username") or m.get("name")
            if name:
                self.names.users[int(m["id"])] = str(name)
        await self._learn_names({user})
        self.banner(standing_of(self.guild, user), note)
        entries = await self._outbox(0, 0.0)
        if history > 0:
            shown = [e for e in entries if self._visible(e)][-history:]
            await self._learn_names(_users_in(shown))
            await self._measure(shown)
            self.say(self.style.dim(f"· the last {len(shown)} of what the bot said here:"))
            for e in shown:
                self.say(*self.screen.entry(e, mine=False))
            self.say(self.style.dim("· from now on:"))
        # From now on: what was said before this console started is history.
        self.after = int(entries[-1]["seq"]) if entries else 0
        if self.limits is not None:
            await self.limits.baseline(self.http, self.base)

    def _place(
        self, guilds: list[dict[str, Any]], channel: int | None
    ) -> tuple[dict[str, Any], int]:
        def texts(g: dict[str, Any]) -> list[dict[str, Any]]:
            return [c for c in g.get("channels") or [] if int(c.get("type", 0)) == 0]

        if channel is not None:
            for g in guilds:
                if any(int(c["id"]) == channel for c in texts(g)):
                    return g, channel
            raise ChatError(f"no text channel {channel} in the sandbox")
        for g in guilds:
            chans = texts(g)
            if chans:
                general = next((c for c in chans if c.get("name") == "general"), chans[0])
                return g, int(general["id"])
        raise ChatError("the sandbox has no text channel; pass --channel")

    def banner(self, standing: str, note: str) -> None:
        s = self.style
        name = self.names.user(self.user_id)
        rights = {
            "member": "a member (no moderator or admin rights)",
            "moderator": "a moderator",
            "admin": "an admin",
            "owner": "the server's owner",
        }[standing]
        where = f"#{self.names.channel(self.channel_id)} of {self.guild.get('name')}"
        lines = [
            f"You are {s.you(name)} ({self.user_id}), {rights}"
            + (f" ({note})" if note else "")
            + f", in {where}.",
            "Type to talk; !help lists the bot's commands, :help the console's; "
            + ("Ctrl-D to leave." if self.interactive else "answers follow each line."),
        ]
        for line in lines:
            print(line, file=self.info, flush=True)

    # -- the sandbox --

    async def _get(self, path: str, **params: str) -> Any:
        try:
            async with self.http.get(self.base + path, params=params or None) as resp:
                data = await resp.json()
                if resp.status >= 400:
                    raise ChatError(f"the sandbox refused {path}: {_error(data)}")
                return data
        except aiohttp.ClientError as exc:
            raise ChatError(f"cannot reach the sandbox at {self.base} ({exc})") from None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST to the control API; a refusal is printed (it names what was wrong)."""
        try:
            async with self.http.post(self.base + path, json=body) as resp:
                data = await resp.json()
        except aiohttp.ClientError as exc:
            raise ChatError(f"cannot reach the sandbox at {self.base} ({exc})") from None
        except ValueError:
            data = None
        if resp.status >= 400:
            said = await self._refusal(resp.status, data) if path == MESSAGES else None
            self.say(self.style.error(f"· {said or 'the sandbox refused that: ' + _error(data)}"))
            return None
        return data if isinstance(data, dict) else {}

    async def _refusal(self, status: int, data: Any) -> str | None:
        """Why the sandbox refused your message, as Discord's client says a timeout or slowmode
        (files.refusal); None for another refusal (the sandbox's message names what was wrong)."""
        until: float | None = None
        member: Any = {}
        if status == 403:  # timed out? Your member's timeout, as a client knows it
            member = await self._api(f"/guilds/{self.guild['id']}/members/{self.user_id}")
            raw = member.get("communication_disabled_until") if isinstance(member, dict) else None
            with contextlib.suppress(TypeError, ValueError):
                until = datetime.fromisoformat(str(raw)).timestamp() if raw else None
            until = until if until is not None and until > time.time() else None
        return refusal(
            status,
            data,
            channel=self.names.channel(self.channel_id),
            timed_out_until=until,
            member_known=isinstance(member, dict),
            tz=self.screen.tz,
        )

    async def _measure(self, entries: list[dict[str, Any]]) -> None:
        """Each PNG's width and height, as a client shows them (from the file's first bytes)."""
        for e in entries:
            await measure(self.http, e.get("attachments") or [], self.base)

    async def _outbox(self, after: int, wait: float) -> list[dict[str, Any]]:
        data = await self._get(
            "/_sandbox/outbox", channel_id=str(self.channel_id), after=str(after), wait=f"{wait:g}"
        )
        return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []

    async def _api(self, path: str) -> Any:
        """A REST call as the bot, for what a member's client knows and the control API doesn't
        say (names, the slash commands). It holds back while a bucket is down to its last
        request: the bot's own calls must not meet an empty bucket (and a 429) on the console's
        account, so a name may stay unknown (`@user 123...`) for a few seconds instead."""
        api, token = self.world.get("api_url"), self.world.get("token")
        if not api or not token:
            return None
        # Discord's bucket: the route with its ids, but for the guild (the major parameter).
        bucket = re.sub(r"(?<!guilds)/\d+", "/{id}", path)
        room = self._api_room.get(bucket)
        if room is not None and room[0] <= 1 and time.monotonic() < room[1]:
            return None
        try:
            async with self.http.get(
                f"{api}{path}", headers={"Authorization": f"Bot {token}"}
            ) as resp:
                left = resp.headers.get("X-RateLimit-Remaining")
                after = resp.headers.get("X-RateLimit-Reset-After")
                if left is not None and after is not None:
                    self._api_room[bucket] = (int(left), time.monotonic() + float(after))
                if resp.status != 200:
                    return None
                return await resp.json()
        except (aiohttp.ClientError, ValueError):
            return None

    async def _learn_names(self, user_ids: Iterable[int]) -> None:
        for uid in sorted(set(user_ids) - set(self.names.users)):
            member = await self._api(f"/guilds/{self.guild['id']}/members/{uid}")
            if isinstance(member, dict) and isinstance(member.get("user"), dict):
                self.names.users[uid] = display_name(member["user"], member.get("nick"))

    async def load_commands(self) -> list[dict[str, Any]]:
        if self.commands is None:
            app = self.world.get("application_id")
            found: list[dict[str, Any]] = []
            for path in (
                f"/applications/{app}/guilds/{self.guild['id']}/commands",
                f"/applications/{app}/commands",
            ):
                got = await self._api(path)
                if isinstance(got, list):
                    found += [c for c in got if isinstance(c, dict)]
            if not found:
                raise InputError(
                    "the bot has registered no slash commands here (`guildhouse run` registers "
                    "them in its sandbox; elsewhere run `guildhouse commands sync`)"
                )
            self.commands = found
        return self.commands

    def _visible(self, entry: dict[str, Any]) -> bool:
        if entry.get("kind") == "modal":
            return str(entry.get("user_id")) == str(self.user_id)
        if entry.get("ephemeral"):
            return str(entry.get("interaction_id")) in self.mine
        return True

    # -- following the channel --

    async def follow(self) -> None:
        while True:
            entries = await self._outbox(self.after, 25.0)
            if not entries:
                continue
            self.after = int(entries[-1]["seq"])
            shown = [e for e in entries if self._visible(e)]
            await self._learn_names(_users_in(shown))
            await self._measure(shown)
            for entry in shown:
                self.say(*self.screen.entry(entry))
                if entry.get("kind") == "modal":
                    self.form = entry
            self.answers += len(shown)
            for entry in shown:
                if self.asks and entry.get("kind") in ANSWERS:
                    self.asks.popleft()
            if shown:
                self.last_output = time.monotonic()
                self.changed.set()

    async def watch_limits(self) -> None:
        """While an answer is late, say whether a rate limit is why (once per wait)."""
        told_for: float | None = None
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            while self.asks and now - self.asks[0] > 4 * ANSWER_WAIT:
                self.asks.popleft()  # never answered (an ignored command): no longer waited for
            since = self.asks[0] if self.asks else None
            if self.limits is None or since is None or since == told_for or now - since < SLOW:
                continue
            why = await self.limits.check(self.http, self.base)
            if why is not None and self.asks and self.asks[0] == since:
                self.tell(why)
                told_for = since


def _users_in(entries: Iterable[dict[str, Any]]) -> set[int]:
    found: set[int] = set()
    for e in entries:
        found |= mentioned_users(str(e.get("content") or ""))
        for embed in e.get("embeds") or []:
            found |= mentioned_users(orjson.dumps(embed).decode())
    return found


def _error(data: Any) -> str:
    if isinstance(data, dict):
        where = data.get("field") or data.get("errors")
        message = str(data.get("message") or data.get("error") or data)
        return f"{where}: {message}" if isinstance(where, str) else message
    return str(data)
