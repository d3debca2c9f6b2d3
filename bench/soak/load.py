"""The soak's load and its ledger: what was sent, and what the bot acknowledged.

Open loop at `RATE` actions a second, drawn by `MIX` weights with the run's seed, from every
plain member of every sandbox server. Each command carries a token of its own so that its
answers can be told apart in the sandbox's outbox: rolls are `1d20+N` (N unique in the run),
reminders and warnings carry `soak-rN` / `soak-wN`, the owner's `points give @member 1000+N`
is answered `Gave 1,00N points to @member`. An outbox poller keeps every entry the bot
produced; acknowledgements are read from it."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

RATE = 8.0  # actions a second, all kinds together
MIX = {"chat": 42, "roll": 14, "slash": 12, "remind": 8, "click": 8, "warn": 5, "give": 4}
TOKEN = re.compile(r"1d20\+(\d+)|soak-[rw]\d+|Gave [\d,]+ points to <@\d+>")
CASE = re.compile(r"^Case (\d+): warned <@!?(\d+)>")
SET = re.compile(r"Reminder #(\d+) set")


@dataclass
class Action:
    kind: str
    token: str  # what its answers contain ("" for chat)
    guild: int
    channel: int
    user: int
    sent: float  # time.monotonic()
    ref: str = ""  # message id (chat, prefix commands) or interaction id
    error: str = ""  # the control API refused it (the sandbox never saw it)
    target: int = 0  # a warning's member
    due: float = 0.0  # a reminder's delay (s); the points a give gives
    case: int = 0  # a warning's case number, from its answer
    after: int = 0  # how many outbox entries the ledger held when it was sent


@dataclass
class Ledger:
    actions: list[Action] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)  # the whole outbox, in order
    by_token: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    cases: dict[tuple[int, int], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    clicked: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # token: clicks
    attributed: set[tuple[int, int]] = field(default_factory=set)  # (guild, case) answered
    confirmed: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add_entries(self, entries: list[dict[str, Any]], channel_guild: dict[int, int]) -> None:
        for entry in entries:
            self.entries.append(entry)
            if entry.get("kind") in ("delete", "reaction", "modal"):
                continue
            text = text_of(entry)
            for match in TOKEN.finditer(text):
                self.by_token[match.group(0)].append(entry)
            if (m := SET.search(text)) and not text.startswith("⏰"):
                self.confirmed[int(m.group(1))].add(str(entry.get("message_id")))
            if m := CASE.match(text):
                guild = channel_guild.get(int(entry["channel_id"]), 0)
                self.cases[(guild, int(m.group(1)))].append(entry)

    def answers(self, token: str) -> set[str]:
        """Distinct messages of the bot that carry `token` (an edit is its message's)."""
        return {str(e.get("message_id")) for e in self.by_token.get(token, [])}


def text_of(entry: dict[str, Any]) -> str:
    data = entry.get("data")
    payload: dict[str, Any] = data if isinstance(data, dict) else entry
    parts = [str(payload.get("content") or "")]
    for embed in payload.get("embeds") or []:
        parts += [str(embed.get("title") or ""), str(embed.get("description") or "")]
        parts += [f"{f.get('name')} {f.get('value')}" for f in embed.get("fields") or []]
    return "\n".join(p for p in parts if p)


@dataclass
class Place:
    guild: int
    channels: list[int]
    owner: int
    members: list[int]


def places_of(world: dict[str, Any]) -> list[Place]:
    bot = int(world["bot"]["id"])
    out = []
    for g in world["guilds"]:
        owner = int(g["owner_id"])
        members = [
            int(m["id"])
            for m in g["members"]
            if not m["roles"] and int(m["id"]) not in (bot, owner)
        ]
        channels = [int(c["id"]) for c in g["channels"] if int(c["type"]) == 0]
        if members and channels:
            out.append(Place(int(g["id"]), channels, owner, members))
    return out


class Load:
    """Drives the sandbox's control API; `run(seconds)` then read `ledger`."""

    def __init__(self, http: aiohttp.ClientSession, control: str, world: dict[str, Any], seed: int):
        self.http = http
        self.control = control
        self.places = places_of(world)
        self.channel_guild = {c: p.guild for p in self.places for c in p.channels}
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.n = 0
        self.after = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.warning: set[int] = set()  # guilds with a warning awaiting its answer
        self.stopping = False

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.control}{path}", json=body) as resp:
            data: dict[str, Any] = await resp.json(content_type=None)
            if resp.status >= 300:
                raise RuntimeError(f"{resp.status} {data.get('message')}")
            return data

    async def poll_outbox(self) -> None:
        """Keep every outbox entry, until stopped and drained."""
        while True:
            params = {"after": str(self.after), "wait": "1"}
            try:
                async with self.http.get(f"{self.control}/_sandbox/outbox", params=params) as r:
                    data = await r.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.5)
                continue
            entries = data if isinstance(data, list) else data.get("entries") or []
            if entries:
                self.after = max(int(e["seq"]) for e in entries)
                self.ledger.add_entries(entries, self.channel_guild)
            elif self.stopping:
                return

    async def run(self, seconds: float) -> None:
        """Send the mix at RATE for `seconds`."""
        kinds, weights = list(MIX), list(MIX.values())
        began = time.monotonic()
        k = 0
        while (now := time.monotonic()) - began < seconds:
            k += 1
            kind = self.rng.choices(kinds, weights)[0]
            task = asyncio.create_task(self.act(kind))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(max(0.0, began + k / RATE - now))

    async def finish(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def act(self, kind: str) -> None:
        place = self.rng.choice(self.places)
        user = self.rng.choice(place.members)
        self.n += 1
        n = self.n
        channel = place.channels[n % len(place.channels)]
        if kind == "click":
            await self.click()
            return
        if kind == "warn":
            await self.warn(place, n)
            return
        action = Action(kind, "", place.guild, channel, user, time.monotonic())
        if kind == "chat":
            body: dict[str, Any] = {"content": f"soak chat {n} gg"}
        elif kind == "roll":
            action.token = f"1d20+{n}"
            body = {"content": f"!roll {action.token}"}
        elif kind == "remind":
            action.token, action.due = f"soak-r{n}", float(self.rng.randint(3, 8))
            body = {"content": f"!remind in {int(action.due)}s {action.token}"}
        elif kind == "give":  # the server's owner (an admin) gives points from the mint
            user, amount = place.owner, 1000 + n
            action.user, action.target, action.due = user, self.rng.choice(place.members), amount
            action.token = f"Gave {amount:,} points to <@{action.target}>"
            body = {"content": f"!points give <@{action.target}> {amount}"}
        else:  # slash
            action.token = f"1d20+{n}"
            body = {"name": "roll", "options": [{"name": "dice", "value": action.token}]}
        self.ledger.actions.append(action)
        try:
            if kind == "slash":
                body.update(channel_id=str(channel), user_id=str(user))
                action.ref = str((await self.post("/_sandbox/interactions", body))["id"])
            else:
                body.update(channel_id=str(channel), author_id=str(user))
                action.ref = str((await self.post("/_sandbox/messages", body))["id"])
        except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
            action.error = str(exc) or type(exc).__name__

    async def click(self) -> None:
        """Press the Reroll button of an answered prefix roll, as its roller, once."""
        rolls = [
            a
            for a in self.ledger.actions[-200:]
            if a.kind == "roll" and a.token not in self.ledger.clicked
        ]
        self.rng.shuffle(rolls)
        for roll in rolls:
            for entry in self.ledger.by_token.get(roll.token, []):
                buttons = [
                    c
                    for row in entry.get("components") or []
                    for c in row.get("components") or []
                    if c.get("custom_id")
                ]
                if entry.get("kind") != "message" or not buttons:
                    continue
                self.ledger.clicked[roll.token] += 1
                action = Action("click", roll.token, roll.guild, roll.channel, roll.user, 0)
                action.sent = time.monotonic()
                self.ledger.actions.append(action)
                body = {
                    "channel_id": str(roll.channel),
                    "user_id": str(roll.user),
                    "message_id": str(entry["message_id"]),
                    "custom_id": buttons[0]["custom_id"],
                }
                try:
                    action.ref = str((await self.post("/_sandbox/interactions", body))["id"])
                except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                    action.error = str(exc) or type(exc).__name__
                return

    async def warn(self, place: Place, n: int) -> None:
        """The server's owner warns a member; one warning a server at a time (its answer,
        `Case N: warned @member`, names no token, so it is the next one in that channel)."""
        if place.guild in self.warning:
            return
        self.warning.add(place.guild)
        try:
            target = self.rng.choice(place.members)
            channel = place.channels[0]
            action = Action("warn", f"soak-w{n}", place.guild, channel, place.owner, 0)
            action.target, action.sent = target, time.monotonic()
            action.after = len(self.ledger.entries)
            self.ledger.actions.append(action)
            body = {
                "channel_id": str(channel),
                "author_id": str(place.owner),
                "content": f"!warn <@{target}> {action.token}",
            }
            try:
                action.ref = str((await self.post("/_sandbox/messages", body))["id"])
            except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                action.error = str(exc) or type(exc).__name__
                return
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not self.warn_answer(action):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        finally:
            self.warning.discard(place.guild)

    def warn_answer(self, action: Action) -> bool:
        """Attribute the warning's answer (the first `Case N: warned @target` in its channel
        after it was sent) and say whether there is one yet."""
        for e in self.ledger.entries[action.after :]:
            m = CASE.match(text_of(e))
            if (
                m
                and str(e.get("channel_id")) == str(action.channel)
                and int(m.group(2)) == action.target
                and (action.guild, int(m.group(1))) not in self.ledger.attributed
            ):
                action.case = int(m.group(1))
                self.ledger.attributed.add((action.guild, action.case))
                return True
        return False
