"""The control API over HTTP (`/_sandbox/...`): each handler reads its request with the
checks of sandbox.control and calls the Python API of the Sandbox; what it returns is answered
as JSON, and a BadInput (or any ApiError) it raises with its status and body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.control import (
    Fields,
    parse_body,
    query_count,
    query_seconds,
    query_snowflake,
    snowflake,
)
from sandbox.errors import ApiError, BadInput

if TYPE_CHECKING:
    from sandbox.server import Sandbox

OUTBOX_MAX_WAIT = 60.0
MESSAGE_AGE_MAX = 5 * 365 * 86400.0


class ControlHttp:
    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/_sandbox/world", _control(self._world))
        app.router.add_post("/_sandbox/messages", _control(self._messages))
        app.router.add_post("/_sandbox/interactions", _control(self._interactions))
        app.router.add_get("/_sandbox/interactions/{id}", _control(self._interaction))
        app.router.add_post("/_sandbox/redeliveries", _control(self._redeliveries))
        app.router.add_get("/_sandbox/modals", _control(self._modals))
        app.router.add_get("/_sandbox/outbox", _control(self._outbox))
        app.router.add_post("/_sandbox/faults", _control(self._faults))
        app.router.add_post("/_sandbox/events", _control(self._events))
        app.router.add_get("/_sandbox/stats", _control(self._stats))
        app.router.add_get("/_sandbox/presence", _control(self._presence))
        arrange = self.sb.arrange
        app.router.add_post("/_sandbox/roles", _control(_body(arrange.create_role)))
        app.router.add_patch("/_sandbox/roles", _control(_body(arrange.edit_role)))
        app.router.add_patch("/_sandbox/members", _control(_body(arrange.edit_member)))
        app.router.add_patch("/_sandbox/guilds", _control(_body(arrange.edit_guild)))
        app.router.add_patch("/_sandbox/users", _control(self._users))
        app.router.add_get("/_sandbox/attachments/{id}", self._attachment)

    async def _world(self, _: web.Request) -> Any:
        return self.sb.world.summary(self.sb.base_url)

    async def _messages(self, request: web.Request) -> Any:
        body = Fields(parse_body(await request.read()))
        msg = await self.sb.send_message(
            body.snowflake("channel_id"),
            body.snowflake("author_id"),
            body.string("content", default=""),
            body.number("age", default=0.0, low=0.0, high=MESSAGE_AGE_MAX),
        )
        return {"id": msg["id"]}

    async def _interactions(self, request: web.Request) -> Any:
        body = Fields(parse_body(await request.read()))
        channel_id, user_id = body.snowflake("channel_id"), body.snowflake("user_id")
        if body.has("fields"):
            for other in ("name", "options", "message_id", "values"):
                if body.has(other):
                    raise BadInput(other, "a modal's submission takes fields (and custom_id) only")
            custom_id = body.string("custom_id", max_length=100) if body.has("custom_id") else None
            payload = await self.sb.submit(channel_id, user_id, body.data["fields"], custom_id)
        elif body.has("custom_id") or body.has("message_id"):
            for other in ("name", "options"):
                if body.has(other):
                    raise BadInput(
                        other, "a click or a pick takes message_id, custom_id (and values) only"
                    )
            message_id = body.snowflake("message_id")
            custom_id = body.string("custom_id", max_length=100)
            payload = await self.sb.users.user_component(
                channel_id, user_id, message_id, custom_id, body.data.get("values")
            )
        else:
            if body.has("values"):
                raise BadInput("values", "picks values from a menu: give message_id and custom_id")
            if not body.has("name"):
                raise BadInput(
                    "name",
                    "is required (or message_id and custom_id, to click a button or pick from a "
                    "menu; or fields, to submit a modal)",
                )
            name = body.string("name", max_length=32)
            payload = await self.sb.send_interaction(
                channel_id, user_id, name, body.data.get("options")
            )
        return {"id": payload["id"]}

    async def _interaction(self, request: web.Request) -> Any:
        return self.sb.users.interaction_state(snowflake(request.match_info["id"], "id"))

    async def _redeliveries(self, request: web.Request) -> Any:
        body = Fields(parse_body(await request.read()))
        payload = await self.sb.redeliver(body.snowflake("id"))
        return {"id": payload["id"]}

    async def _modals(self, request: web.Request) -> Any:
        user_id = query_snowflake(request.query, "user_id")
        if user_id is None:
            raise BadInput("user_id", "is required")
        if user_id not in self.sb.world.users:
            raise BadInput("user_id", f"no user {user_id}", 10013)
        return {"modal": self.sb.users.open_modal(user_id)}

    async def _outbox(self, request: web.Request) -> Any:
        after = query_count(request.query, "after", default=0)
        wait = query_seconds(request.query, "wait", default=0.0, high=OUTBOX_MAX_WAIT)
        channel_id = query_snowflake(request.query, "channel_id")
        if channel_id is not None and self.sb.world.channel(channel_id) is None:
            raise BadInput("channel_id", f"no channel {channel_id}", 10003)
        return await self.sb.outbox(channel_id, after, wait)

    async def _faults(self, request: web.Request) -> Any:
        body = Fields(parse_body(await request.read()))
        hit = await self.sb.fault(
            body.string("kind"),
            shard=body.integer("shard", default=0, low=0, high=1 << 20)
            if body.has("shard")
            else None,
            route=body.string("route", default="*", max_length=200),
            count=body.integer("count", default=1, low=1, high=1_000_000),
            status=body.integer("status", default=500, low=400, high=599),
            is_global=body.boolean("global", default=False),
            retry_after=body.number("retry_after", default=1.0, low=0.0, high=3600.0),
            code=body.integer("code", default=4000, low=4000, high=4999),
        )
        return {"applied": hit}

    async def _events(self, request: web.Request) -> Any:
        body = Fields(parse_body(await request.read()))
        kind = body.string("kind")
        return await self.sb.event(kind, {k: v for k, v in body.data.items() if k != "kind"})

    async def _users(self, request: web.Request) -> Any:
        return self.sb.arrange.edit_user(parse_body(await request.read()))

    async def _attachment(self, request: web.Request) -> web.Response:
        """The bytes of a file the bot uploaded (404 for none)."""
        raw = request.match_info["id"]
        try:
            item = self.sb.rest.attachments.find(snowflake(raw, "id"))
        except BadInput as err:
            return web.json_response(err.body(), status=400)
        if item is None:
            return web.json_response({"message": f"id: no attachment {raw}", "code": 0}, status=404)
        return web.Response(
            body=item.data,
            headers={
                "Content-Type": item.content_type,
                "Content-Disposition": f'attachment; filename="{item.filename}"',
            },
        )

    async def _stats(self, _: web.Request) -> Any:
        return self.sb.stats()

    async def _presence(self, _: web.Request) -> Any:
        return self.sb.gateway.presences.summary()


def _body(
    action: Callable[[dict[str, Any]], Awaitable[Any]],
) -> Callable[[web.Request], Awaitable[Any]]:
    """A handler that passes the request's JSON object to `action`."""

    async def handler(request: web.Request) -> Any:
        return await action(parse_body(await request.read()))

    return handler


def _control(
    handler: Callable[[web.Request], Awaitable[Any]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(request: web.Request) -> web.Response:
        try:
            return web.json_response(await handler(request))
        except ApiError as err:
            return web.json_response(err.body(), status=err.status)

    return answer
