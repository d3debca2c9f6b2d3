"""Channel messages: checked as Discord checks them, made as Discord returns them, and the
routes that send, read, edit, delete (one or in bulk) and react to them."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from sandbox import components as ui
from sandbox.components import FormErrors
from sandbox.errors import ApiError
from sandbox.rest.attachments import attach
from sandbox.rest.base import (
    COMMAND,
    EPHEMERAL,
    LOADING,
    MAX_CONTENT,
    Resource,
    RouteSpec,
    audit_reason,
    field_error,
    not_json,
)
from sandbox.rest.form import NOT_A_DICT, Form
from sandbox.world import (
    CHANNEL_DM,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    iso,
    snowflake_time,
)

if TYPE_CHECKING:
    from aiohttp import web

    from sandbox.rest.attachments import Upload
    from sandbox.world import Channel, Guild

EMBED_LIMITS = {"title": 256, "description": 4096, "fields": 25, "footer": 2048, "author": 256}
EMBED_TOTAL = 6000
BULK_MIN, BULK_MAX = 2, 100
BULK_MAX_AGE = 14 * 86400  # bulk delete refuses messages older than two weeks
MESSAGE_DELETE, MESSAGE_BULK_DELETE = 72, 73  # audit log action types


def _embed(errors: FormErrors, i: int, embed: Any) -> int:
    """One embed's limits; returns its characters toward the 6,000 of a message."""
    path: list[str | int] = ["embeds", i]
    if not isinstance(embed, dict):
        errors.add(path, "DICT_TYPE_CONVERT", NOT_A_DICT)
        return 0
    total = 0
    for key in ("title", "description"):
        value = embed.get(key)
        if value is not None:
            errors.length([*path, key], value, 0, EMBED_LIMITS[key])
            total += len(value) if isinstance(value, str) else 0
    fields = embed.get("fields")
    if fields is not None and errors.items([*path, "fields"], fields, 0, 25) is not None:
        for j, f in enumerate(fields):
            if not isinstance(f, dict):
                errors.add(
                    [*path, "fields", j],
                    "DICT_TYPE_CONVERT",
                    NOT_A_DICT,
                )
                continue
            for key, limit in (("name", 256), ("value", 1024)):
                value = f.get(key)
                if value is None:
                    errors.add(
                        [*path, "fields", j, key], "BASE_TYPE_REQUIRED", "This field is required"
                    )
                    continue
                text = value if isinstance(value, str) else str(value)
                total += len(text)
                if not 1 <= len(text) <= limit:
                    errors.add(
                        [*path, "fields", j, key],
                        "BASE_TYPE_BAD_LENGTH",
                        f"Must be between 1 and {limit} in length.",
                    )
    for key, inner, limit in (("footer", "text", 2048), ("author", "name", 256)):
        part = embed.get(key)
        if part is None:
            continue
        if not isinstance(part, dict):
            errors.add([*path, key], "DICT_TYPE_CONVERT", NOT_A_DICT)
            continue
        value = part.get(inner)
        if value is not None:
            errors.length([*path, key, inner], value, 0, limit)
            total += len(value) if isinstance(value, str) else 0
    return total


def validate_message(body: Any, *, partial: bool = False) -> dict[str, Any]:
    """A message body, checked as Discord checks it; every problem in one 400."""
    if not isinstance(body, dict):
        raise (not_json() if body is None else field_error([], "DICT_TYPE_CONVERT", NOT_A_DICT))
    form = Form(body)
    errors = form.errors
    content = form.string("content", high=MAX_CONTENT, nullable=True)
    embeds = body.get("embeds")
    if embeds is not None and errors.items(["embeds"], embeds, 0, 10) is not None:
        total = sum(_embed(errors, i, e) for i, e in enumerate(embeds))
        if total > EMBED_TOTAL:
            errors.add(
                ["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
            )
    flags = form.integer("flags", low=0, high=(1 << 31) - 1, nullable=True, default=0)
    form.boolean("tts")
    nonce = body.get("nonce")
    if nonce is not None and not (
        (isinstance(nonce, int) and not isinstance(nonce, bool))
        or (isinstance(nonce, str) and len(nonce) <= 25)
    ):
        errors.add(["nonce"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for key in ("message_reference", "allowed_mentions", "poll"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            errors.add([key], "DICT_TYPE_CONVERT", NOT_A_DICT)
    reference = body.get("message_reference")
    if isinstance(reference, dict) and reference.get("message_id") is not None:
        Form(reference, ["message_reference"]).snowflake("message_id")
    for key in ("sticker_ids", "attachments"):
        if body.get(key) is not None:
            errors.items([key], body[key], 0, 10)
    form.check()
    if body.get("components") is not None:
        body = {**body, "components": ui.message_components(body["components"], flags or 0)}
    if (
        not partial
        and not content
        and not embeds
        and not body.get("components")
        and not (body.get("sticker_ids") or body.get("attachments") or body.get("poll"))
    ):
        raise ApiError(400, 50006, "Cannot send an empty message")
    checked: dict[str, Any] = body
    return checked


class Messages(Resource):
    def routes(self) -> list[RouteSpec]:
        one = "/channels/{channel_id}/messages/{message_id}"
        return [
            RouteSpec("GET", "/channels/{channel_id}/messages", self.list_messages),
            RouteSpec("POST", "/channels/{channel_id}/messages", self.create_message),
            RouteSpec("POST", "/channels/{channel_id}/messages/bulk-delete", self.bulk_delete),
            RouteSpec("GET", one, self.get_message),
            RouteSpec("PATCH", one, self.edit_message),
            RouteSpec("DELETE", one, self.delete_message),
            RouteSpec("PUT", one + "/reactions/{emoji}/@me", self.add_reaction),
        ]

    # -- making and editing messages -----------------------------------------------------------

    def make(
        self,
        channel: Channel,
        guild: Guild | None,
        author_id: int,
        body: dict[str, Any],
        *,
        webhook_id: int | None = None,
        interaction: dict[str, Any] | None = None,
        files: list[Upload] | None = None,
        at: float | None = None,
    ) -> dict[str, Any]:
        """A message as Discord returns it, kept in its channel. `at`: when it was sent (now)."""
        sent = time.time() if at is None else at
        mid = self.world.ids.at(sent)
        content = body.get("content") or ""
        mentions = [
            self.world.users[int(u)].to_dict()
            for u in re.findall(r"<@!?(\d{1,20})>", content)
            if int(u) in self.world.users
        ]
        msg: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(channel.id),
            "author": self.world.users[author_id].to_dict(),
            "content": content,
            "timestamp": iso(sent),
            "edited_timestamp": None,
            "tts": bool(body.get("tts")),
            "mention_everyone": "@everyone" in content,
            "mentions": mentions,
            "mention_roles": [],
            "mention_channels": [],
            "attachments": self.state_attachments(channel, body, files or [], []),
            "embeds": body.get("embeds") or [],
            "reactions": [],
            "nonce": body.get("nonce"),
            "pinned": False,
            "webhook_id": str(webhook_id) if webhook_id else None,
            # A command's answer is a CHAT_INPUT_COMMAND message; a component's or a modal's, a
            # DEFAULT one.
            "type": 20
            if interaction and interaction["type"] == COMMAND
            else (19 if body.get("message_reference") else 0),
            "application_id": str(self.world.application_id) if interaction else None,
            "flags": int(body.get("flags") or 0),
            "message_reference": body.get("message_reference"),
            "referenced_message": None,
            "components": body.get("components") or [],
            "sticker_items": [],
            "interaction_metadata": interaction["metadata"] if interaction else None,
        }
        # Optional (not nullable) fields are left out when they have no value, as Discord does.
        for key in ("webhook_id", "application_id", "message_reference", "interaction_metadata"):
            if msg[key] is None:
                del msg[key]
        if msg["nonce"] is None:
            del msg["nonce"]
        if guild is not None:
            msg["guild_id"] = str(guild.id)
            member = guild.members.get(author_id)
            if member is not None:
                msg["member"] = member.to_dict(self.world, with_user=False)
        self.state.messages.setdefault(channel.id, {})[mid] = msg
        if interaction and msg["flags"] & EPHEMERAL:
            self.state.ephemeral[mid] = interaction["user_id"]
        elif channel.last_message_id is None or mid > channel.last_message_id:
            channel.last_message_id = mid
        return msg

    def state_attachments(
        self, channel: Channel, body: dict[str, Any], files: list[Upload], kept: list[Any]
    ) -> list[dict[str, Any]]:
        """The message's attachments: those it keeps, and the files uploaded with it."""
        if not files and not body.get("attachments"):
            return []
        return attach(self.state, channel, body, files, kept)

    async def edit(
        self,
        ch: Channel,
        guild: Guild | None,
        msg: dict[str, Any],
        body: Any,
        files: list[Upload] | None = None,
    ) -> dict[str, Any]:
        body = validate_message(body, partial=True)
        for key in ("content", "embeds", "components"):
            if key in body and body[key] is not None:
                msg[key] = body[key]
        if files or body.get("attachments") is not None:
            msg["attachments"] = self.state_attachments(ch, body, files or [], msg["attachments"])
        # An edit can't make a message ephemeral or public; it ends a deferred "thinking" one.
        flags = body.get("flags") if isinstance(body.get("flags"), int) else msg["flags"]
        msg["flags"] = (flags & ~(EPHEMERAL | LOADING)) | (msg["flags"] & EPHEMERAL)
        msg["edited_timestamp"] = iso(time.time())
        ephemeral = int(msg["id"]) in self.state.ephemeral
        await self.state.to_outbox("edit", ch.id, msg, ephemeral=ephemeral)
        if not ephemeral:  # nobody else sees an ephemeral message: no event for it
            await self.gateway.dispatch("MESSAGE_UPDATE", msg, guild.id if guild else None)
        return msg

    # -- routes --------------------------------------------------------------------------------

    async def list_messages(
        self, channel_id: str, request: web.Request, **_: Any
    ) -> list[dict[str, Any]]:
        """Newest first, `limit` 1 to 100 (50): the latest, or those just `before` or just
        `after` a message id, or `around` one (half each side); one of the three at most.
        Needs Read Message History as well as View Channel."""
        guild, ch = self.state.channel(channel_id)
        form = Form(dict(request.query))
        limit = form.integer("limit", low=1, high=100, default=50)
        anchors = {k: form.snowflake(k) for k in ("around", "before", "after") if form.has(k)}
        form.check()
        self.state.require(guild, ch, VIEW_CHANNEL, READ_MESSAGE_HISTORY)
        ids = sorted(
            mid for mid in self.state.messages.get(ch.id, {}) if mid not in self.state.ephemeral
        )
        # Discord takes the first of around, before, after that is given.
        if "around" in anchors:
            at, half = anchors["around"], limit // 2
            older = [i for i in ids if i < at][-half:] if half else []
            ids = older + [i for i in ids if i >= at][: limit - len(older)]
        elif "before" in anchors:
            ids = [i for i in ids if i < anchors["before"]][-limit:]
        elif "after" in anchors:
            ids = [i for i in ids if i > anchors["after"]][:limit]
        else:
            ids = ids[-limit:]
        box = self.state.messages[ch.id] if ids else {}
        return [box[i] for i in reversed(ids)]

    async def create_message(
        self, channel_id: str, body: Any, files: list[Upload], **_: Any
    ) -> dict[str, Any]:
        guild, ch = self.state.channel(channel_id)
        self.state.require(guild, ch, VIEW_CHANNEL, SEND_MESSAGES)
        if ch.type == CHANNEL_DM and any(u in self.world.closed_dms for u in ch.recipients):
            raise ApiError(403, 50007, "Cannot send messages to this user")
        if files and isinstance(body, dict) and not body.get("attachments"):
            body = {**body, "attachments": [{"id": i} for i in range(len(files))]}
        body = validate_message(body)
        msg = self.make(ch, guild, self.world.bot.id, body, files=files)
        await self.state.to_outbox(
            "message", ch.id, msg, allowed_mentions=body.get("allowed_mentions")
        )
        await self.gateway.dispatch("MESSAGE_CREATE", msg, guild.id if guild else None)
        return msg

    async def get_message(self, channel_id: str, message_id: str, **_: Any) -> dict[str, Any]:
        guild, ch = self.state.channel(channel_id)
        self.state.require(guild, ch, VIEW_CHANNEL)
        return self.state.message(ch.id, message_id)

    async def edit_message(
        self, channel_id: str, message_id: str, body: Any, files: list[Upload], **_: Any
    ) -> dict[str, Any]:
        guild, ch = self.state.channel(channel_id)
        msg = self.state.message(ch.id, message_id)
        if msg["author"]["id"] != str(self.world.bot.id):
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return await self.edit(ch, guild, msg, body, files)

    async def delete_message(
        self, channel_id: str, message_id: str, request: web.Request, **_: Any
    ) -> None:
        guild, ch = self.state.channel(channel_id)
        msg = self.state.message(ch.id, message_id)
        author = int(msg["author"]["id"])
        if author != self.world.bot.id:
            self.state.require(guild, ch, MANAGE_MESSAGES)
            if guild is not None:
                await self.state.audit(
                    guild,
                    MESSAGE_DELETE,
                    user_id=self.world.bot.id,
                    target_id=author,
                    reason=audit_reason(request),
                    options={"channel_id": str(ch.id), "count": "1"},
                )
        await self.remove(guild, ch, [int(msg["id"])])

    async def remove(self, guild: Guild | None, ch: Channel, ids: list[int]) -> None:
        """Deletes messages: MESSAGE_DELETE for one, MESSAGE_DELETE_BULK for several."""
        for mid in ids:
            self.state.messages.get(ch.id, {}).pop(mid, None)
            await self.state.to_outbox("delete", ch.id, None, message_id=str(mid))
        where = {"channel_id": str(ch.id), **({"guild_id": str(guild.id)} if guild else {})}
        gid = guild.id if guild else None
        if len(ids) == 1:
            await self.gateway.dispatch("MESSAGE_DELETE", {"id": str(ids[0]), **where}, gid)
        elif ids:
            payload: dict[str, Any] = {"ids": [str(i) for i in ids], **where}
            await self.gateway.dispatch("MESSAGE_DELETE_BULK", payload, gid)

    async def bulk_delete(self, channel_id: str, body: Any, request: web.Request, **_: Any) -> None:
        """2 to 100 distinct ids of messages under 14 days old (50034 otherwise); ids of no
        message of the channel are passed over, as on Discord."""
        guild, ch = self.state.channel(channel_id)
        if body is None:
            raise not_json()
        form = Form(body)
        ids = form.snowflakes("messages", low=BULK_MIN, high=BULK_MAX, required=True) or []
        if len(set(ids)) != len(ids):
            form.errors.add(["messages"], "BASE_TYPE_DUPLICATES", "Values must be unique.")
        form.check()
        if guild is None:
            raise ApiError(403, 50003, "Cannot execute action on a DM channel")
        self.state.require(guild, ch, VIEW_CHANNEL, MANAGE_MESSAGES)
        if any(time.time() - snowflake_time(i) > BULK_MAX_AGE for i in ids):
            raise ApiError(400, 50034, "A message provided was too old to bulk delete")
        present = self.state.messages.get(ch.id, {})
        found = [i for i in ids if i in present and i not in self.state.ephemeral]
        await self.remove(guild, ch, found)
        await self.state.audit(
            guild,
            MESSAGE_BULK_DELETE,
            user_id=self.world.bot.id,
            target_id=ch.id,
            reason=audit_reason(request),
            options={"count": str(len(found))},
        )

    async def add_reaction(self, channel_id: str, message_id: str, emoji: str, **_: Any) -> None:
        _guild, ch = self.state.channel(channel_id)
        self.state.message(ch.id, message_id)
        await self.state.to_outbox("reaction", ch.id, None, message_id=message_id, emoji=emoji)
