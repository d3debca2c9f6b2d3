"""Answering interactions: the callback (each response type as Discord allows it for each
interaction type) and the interaction's webhook (follow-ups, `@original`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sandbox import components as ui
from sandbox.errors import ApiError
from sandbox.rest.base import (
    CALLBACKS,
    DEFERRED_MESSAGE,
    DEFERRED_UPDATE,
    EPHEMERAL,
    LOADING,
    MESSAGE,
    MODAL,
    MODAL_SUBMIT,
    TOKEN_LIFE,
    UPDATE,
    Resource,
    RouteSpec,
    unknown,
)
from sandbox.rest.form import NOT_A_DICT, Form
from sandbox.rest.messages import validate_message

if TYPE_CHECKING:
    from aiohttp import web

    from sandbox.rest.attachments import Upload
    from sandbox.rest.base import State
    from sandbox.rest.messages import Messages
    from sandbox.world import Channel, Guild

Reply = tuple[int, dict[str, Any] | None]  # (callback type, the message it made or edited)


class Interactions(Resource):
    def __init__(self, state: State, messages: Messages) -> None:
        super().__init__(state)
        self.messages = messages

    def routes(self) -> list[RouteSpec]:
        hook = "/webhooks/{webhook_id}/{token}"
        free = {"exempt_global": True, "auth": False}
        return [
            RouteSpec(
                "POST", "/interactions/{interaction_id}/{token}/callback", self.callback, **free
            ),
            RouteSpec("GET", hook + "/messages/{message_id}", self.webhook_get, **free),
            RouteSpec("PATCH", hook + "/messages/{message_id}", self.webhook_edit, **free),
            RouteSpec("DELETE", hook + "/messages/{message_id}", self.webhook_delete, **free),
            RouteSpec("POST", hook, self.webhook_followup, **free),
        ]

    def _interaction(self, token: str) -> dict[str, Any]:
        found = self.state.interactions.get(token)
        if found is None:
            raise unknown("interaction")
        return found

    # -- the callback --------------------------------------------------------------------------

    def _accepts(self, it: dict[str, Any], interaction_id: str, body: Any) -> int:
        """The callback type, if this interaction may still take it (else Discord's error)."""
        if it["id"] != interaction_id:
            raise unknown("interaction")
        if it["response"] is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if time.time() - it["created"] > self.config.interaction_deadline:
            # Not answered within 3 s: Discord has told the user it failed, and forgets it.
            it["late"] = True
            raise unknown("interaction")
        allowed = CALLBACKS[it["type"]]
        if it["type"] == MODAL_SUBMIT and it.get("message_id"):
            allowed = (*allowed, DEFERRED_UPDATE, UPDATE)
        form = Form(body)
        kind = form.choice("type", allowed, required=True)
        if form.data.get("data") is not None and not isinstance(form.data["data"], dict):
            form.errors.add(["data"], "DICT_TYPE_CONVERT", NOT_A_DICT)
        form.check()
        return int(kind)

    async def callback(
        self,
        interaction_id: str,
        token: str,
        body: Any,
        request: web.Request,
        files: list[Upload],
        **_: Any,
    ) -> dict[str, Any] | None:
        it = self._interaction(token)
        kind = self._accepts(it, interaction_id, body)
        guild, ch = self.state.channel(it["channel_id"])
        data = body.get("data") or {}
        flags = data.get("flags")
        ephemeral = isinstance(flags, int) and bool(flags & EPHEMERAL)
        msg: dict[str, Any] | None = None
        if kind == MESSAGE:
            msg = await self._message(it, guild, ch, data, ephemeral=ephemeral, files=files)
        elif kind == UPDATE:
            target = self.state.message(ch.id, it["message_id"], ephemeral=True)
            msg = await self.messages.edit(ch, guild, target, data, files)
            it["original"] = int(msg["id"])
        elif kind == DEFERRED_MESSAGE:
            await self._deferred(it, guild, ch, ephemeral)
        elif kind == DEFERRED_UPDATE:
            # Nothing the user sees changes; @original is the component's message from now on.
            it["original"] = int(it["message_id"])
        elif kind == MODAL:
            await self._modal(it, ch, data)
        it["response"] = kind
        it["responded"] = True
        if request.query.get("with_response") in ("true", "True", "1"):
            return self._with_response(it, interaction_id, kind, msg, ephemeral)
        return None

    async def _message(
        self,
        it: dict[str, Any],
        guild: Guild | None,
        ch: Channel,
        data: Any,
        *,
        ephemeral: bool,
        files: list[Upload],
    ) -> dict[str, Any]:
        data = validate_message(data)
        msg = self.messages.make(
            ch,
            guild,
            self.world.bot.id,
            data,
            webhook_id=self.world.application_id,
            interaction=it,
            files=files,
        )
        it["original"] = int(msg["id"])
        await self.state.to_outbox(
            "interaction_response", ch.id, msg, interaction_id=it["id"], ephemeral=ephemeral
        )
        return msg

    async def _deferred(
        self, it: dict[str, Any], guild: Guild | None, ch: Channel, ephemeral: bool
    ) -> None:
        """The user sees "<bot> is thinking..." until the original response is edited (or the
        first follow-up arrives, which takes its place)."""
        msg = self.messages.make(
            ch,
            guild,
            self.world.bot.id,
            {"content": "", "flags": LOADING | (EPHEMERAL if ephemeral else 0)},
            webhook_id=self.world.application_id,
            interaction=it,
        )
        it["original"] = int(msg["id"])
        it["deferred"] = True
        await self.state.to_outbox(
            "deferred", ch.id, msg, interaction_id=it["id"], ephemeral=ephemeral
        )

    async def _modal(self, it: dict[str, Any], ch: Channel, data: Any) -> None:
        shown = ui.modal(data)
        self.state.modals[it["user_id"]] = {
            "modal": shown,
            "channel_id": it["channel_id"],
            "message_id": it.get("message_id"),
            "opened_by": it,
        }
        await self.state.to_outbox(
            "modal",
            ch.id,
            None,
            interaction_id=it["id"],
            user_id=str(it["user_id"]),
            custom_id=shown["custom_id"],
            title=shown["title"],
            inputs=ui.inputs(shown),
        )

    @staticmethod
    def _with_response(
        it: dict[str, Any],
        interaction_id: str,
        kind: int,
        msg: dict[str, Any] | None,
        ephemeral: bool,
    ) -> dict[str, Any]:
        """`?with_response=true`: {interaction, resource}."""
        answer: dict[str, Any] = {
            "id": interaction_id,
            "type": it["type"],
            "activity_instance_id": None,
            "response_message_loading": kind == DEFERRED_MESSAGE,
            "response_message_ephemeral": ephemeral,
        }
        if it.get("original"):
            answer["response_message_id"] = str(it["original"])
        reply: dict[str, Any] = {"interaction": answer}
        if msg is not None and kind in (MESSAGE, UPDATE):
            reply["resource"] = {"type": kind, "message": msg}
        return reply

    # -- the interaction's webhook ---------------------------------------------------------------

    def _webhook(self, webhook_id: str, token: str) -> dict[str, Any]:
        if webhook_id != str(self.world.application_id):
            raise unknown("webhook")
        it = self._interaction(token)
        if time.time() - it["created"] > TOKEN_LIFE * self.config.window_scale:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return it

    def _webhook_message(self, it: dict[str, Any], message_id: str) -> dict[str, Any]:
        if message_id == "@original":
            if not it.get("original"):
                raise unknown("message")
            message_id = str(it["original"])
        return self.state.message(int(it["channel_id"]), message_id, ephemeral=True)

    async def webhook_get(
        self, webhook_id: str, token: str, message_id: str, **_: Any
    ) -> dict[str, Any]:
        return self._webhook_message(self._webhook(webhook_id, token), message_id)

    async def webhook_edit(
        self,
        webhook_id: str,
        token: str,
        message_id: str,
        body: Any,
        files: list[Upload],
        **_: Any,
    ) -> dict[str, Any]:
        it = self._webhook(webhook_id, token)
        msg = self._webhook_message(it, message_id)
        if int(msg["id"]) == it.get("original"):
            it.pop("deferred", None)  # the "thinking" message now says something
        guild, ch = self.state.channel(it["channel_id"])
        return await self.messages.edit(ch, guild, msg, body, files)

    async def webhook_delete(self, webhook_id: str, token: str, message_id: str, **_: Any) -> None:
        it = self._webhook(webhook_id, token)
        msg = self._webhook_message(it, message_id)
        mid = int(msg["id"])
        if mid in self.state.ephemeral and mid != it.get("original"):
            raise unknown("message")  # "Does not support ephemeral followups"
        guild, ch = self.state.channel(it["channel_id"])
        if self.state.ephemeral.pop(mid, None) is None:
            await self.messages.remove(guild, ch, [mid])
        else:  # nobody else saw it: no event
            del self.state.messages[ch.id][mid]
            await self.state.to_outbox("delete", ch.id, None, message_id=msg["id"])

    async def webhook_followup(
        self, webhook_id: str, token: str, body: Any, files: list[Upload], **_: Any
    ) -> dict[str, Any]:
        it = self._webhook(webhook_id, token)
        if it["response"] is None:
            raise unknown("webhook")
        guild, ch = self.state.channel(it["channel_id"])
        if it.pop("deferred", False):
            # The first follow-up to a deferred response is that response: it replaces the
            # "thinking" message, ephemeral or not as the deferral said.
            placeholder = self.state.message(ch.id, str(it["original"]), ephemeral=True)
            return await self.messages.edit(ch, guild, placeholder, body, files)
        body = validate_message(body)
        flags = body.get("flags")
        ephemeral = isinstance(flags, int) and bool(flags & EPHEMERAL)
        msg = self.messages.make(
            ch,
            guild,
            self.world.bot.id,
            body,
            webhook_id=self.world.application_id,
            interaction=it,
            files=files,
        )
        await self.state.to_outbox(
            "followup", ch.id, msg, interaction_id=it["id"], ephemeral=ephemeral
        )
        return msg
