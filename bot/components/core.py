"""Handlers, the items they put on messages, and what happens when one is pressed.

One discord.py `DynamicItem` (`Persistent`) matches every custom_id of ours (bot/components/
ids.py), in every worker, from the start: no view is kept in memory, so a click is answered by
whichever worker receives it, after a restart as before. It hands the click to the `Handler`
the custom_id names, through `run`, which decides in this order:

1. the worker is stopping: "I'm restarting", ephemeral;
2. the interaction id was seen already (Discord's retry, a second delivery): nothing;
3. the handler is unknown, or the state gone or past its expiry: "This has expired",
   ephemeral, and the handler's components are taken off the message;
4. the handler refuses the user (`allowed`): its refusal, ephemeral;
5. a single-use component (`once`) already used (a double click): acknowledged, nothing more;
6. the handler's work; if it has not answered 2 s after the interaction was created, the
   interaction is deferred for it (Discord allows 3 s), and its answer goes out as the edit or
   the follow-up that then takes the place of a first response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import discord
from discord.ui import DynamicItem, Item
from discord.utils import MISSING

from bot import errors, metrics, outages
from bot.checks import Level, level_of
from bot.components import ids
from bot.components import state as component_state
from bot.components.ids import CustomId

if TYPE_CHECKING:
    from bot.core import Guildhouse

log = logging.getLogger(__name__)

# Discord wants a first answer within 3 s of the interaction's creation; at 2 s, whatever the
# handler is still doing, the interaction is deferred for it.
DEFER_AFTER = 2.0
# The name of the task that runs a handler: a worker's drain waits for tasks of this name, as
# for commands (bot/core.py).
TASK_NAME = "guildhouse: component"
RESTARTING = "I'm restarting; try again in a few seconds."
EXPIRED = "This has expired."
REGISTRY: dict[str, type[Handler]] = {}


class Who(Enum):
    """Who may press a handler's components (`Handler.who`); its `allowed` may say more."""

    OWNER = "owner"  # whoever the component belongs to (anyone, if it belongs to nobody)
    ANYONE = "anyone"
    MODERATORS = "moderators"
    OWNER_OR_MODERATORS = "owner or moderators"


Defer = Literal["update", "reply", "reply_ephemeral"]


class Handler:
    """What a family of persistent components does. Subclass it with a name, which goes into
    every custom_id (`class Reroll(Handler, name="reroll")`), and override `pressed`.

    The state is what `new` was given: it comes back as `press.state`. Small state travels in
    the custom_id; larger state is kept in PostgreSQL until the component expires (`ttl`).
    """

    name: ClassVar[str] = ""
    ttl: ClassVar[float] = 15 * 60  # seconds a component can be used
    who: ClassVar[Who] = Who.OWNER
    refusal: ClassVar[str] = "That isn't yours to use."
    # A single-use component acts on its first press only; later ones (a double click, another
    # worker's copy of the same click) are acknowledged and do nothing.
    once: ClassVar[bool] = False
    # How to acknowledge a press whose work is not answered within 2 s: "update" (the user sees
    # nothing until the message is edited), "reply" / "reply_ephemeral" ("thinking...").
    defer: ClassVar[Defer] = "update"
    # The longest `action` of the handler's components: the rest of 100 characters is room for
    # inline state.
    action_room: ClassVar[int] = 8

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is None:
            return  # an abstract base (Form)
        if not ids.NAME.fullmatch(name):
            raise ValueError(f"a handler's name is 1-16 of a-z, 0-9 and _, not {name!r}")
        if not 0 <= cls.action_room <= 16:
            raise ValueError("action_room must be 0 to 16")
        known = REGISTRY.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"handler name {name!r} is taken by {known.__qualname__}")
        cls.name = name
        REGISTRY[name] = cls  # a reloaded extension replaces its own handlers

    # -- making components ---------------------------------------------------------------------

    @classmethod
    async def new(
        cls,
        bot: Guildhouse,
        *,
        owner: int | None = None,
        state: Any = None,
        ttl: float | None = None,
        stored: bool | None = None,
    ) -> Ref:
        """A state for this handler's components: in the custom_id if it fits (no round trip)
        or `stored` is False, else (or if `stored`) in PostgreSQL."""
        expires_at = time.time() + (cls.ttl if ttl is None else ttl)
        if stored is not True:
            inline = ids.encode_inline(expires_at, owner, state)
            if len(inline) <= ids.room(cls.name, cls.action_room):
                return Ref(cls, inline)
            if stored is False:
                raise ValueError(f"{cls.name}: state too large for a custom_id")
        sid = ids.new_stored_id()
        await component_state.save(
            bot.pool, sid, handler=cls.name, owner_id=owner, data=state, expires_at=expires_at
        )
        return Ref(cls, ids.STORED + sid)

    # -- answering -------------------------------------------------------------------------------

    async def load(self, bot: Guildhouse, custom: CustomId) -> component_state.Stored | None:
        """The state of a pressed component, None if there is none (any more)."""
        sid = custom.stored_id
        if sid is None:
            inline = ids.decode_inline(custom.ref)
            if inline is None:
                return None
            return component_state.Stored(inline.owner_id, inline.expires_at, inline.data)
        return await component_state.load(bot.pool, sid, custom.name)

    async def allowed(self, press: Press) -> str | None:
        """None if `press.user` may use this component, else what to tell them."""
        who = self.who
        owner = press.owner_id
        if who is Who.ANYONE or (who is Who.OWNER and owner is None):
            return None
        if owner is not None and press.user.id == owner and who is not Who.MODERATORS:
            return None
        if (
            who in (Who.MODERATORS, Who.OWNER_OR_MODERATORS)
            and await level_of(press.bot, press.user, press.guild) >= Level.MODERATOR
        ):
            return None
        return self.refusal

    async def pressed(self, press: Press) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Ref:
    """One state of a handler; builds the components that carry it."""

    handler: type[Handler]
    ref: str

    def custom_id(self, action: str = "") -> str:
        if not ids.ACTION.fullmatch(action) or len(action) > self.handler.action_room:
            raise ValueError(
                f"{self.handler.name}: action {action!r} is not 0-{self.handler.action_room} "
                "of A-Z, a-z, 0-9, _ and -"
            )
        return str(CustomId(self.handler.name, action, self.ref))

    def button(
        self,
        label: str | None = None,
        *,
        action: str = "",
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        emoji: str | None = None,
        disabled: bool = False,
        row: int | None = None,
    ) -> Persistent:
        return Persistent(
            discord.ui.Button(
                label=label,
                style=style,
                emoji=emoji,
                disabled=disabled,
                custom_id=self.custom_id(action),
            ),
            row=row,
        )

    def _menu(self, kind: type[Any], action: str, row: int | None, **options: Any) -> Persistent:
        # Every kind of menu is made the same way: its custom_id names this handler.
        return Persistent(kind(custom_id=self.custom_id(action), **options), row=row)

    def select(
        self,
        options: Sequence[discord.SelectOption],
        *,
        action: str = "",
        placeholder: str | None = None,
        min_values: int = 1,
        max_values: int = 1,
        row: int | None = None,
    ) -> Persistent:
        """A menu of fixed options (`press.values`: the chosen options' values)."""
        return self._menu(
            discord.ui.Select,
            action,
            row,
            placeholder=placeholder,
            min_values=min_values,
            max_values=max_values,
            options=list(options),
        )

    def user_select(
        self,
        *,
        action: str = "",
        placeholder: str | None = None,
        min_values: int = 1,
        max_values: int = 1,
        row: int | None = None,
    ) -> Persistent:
        """A menu of members (`press.values`: discord.Member in a server, else discord.User)."""
        return self._menu(
            discord.ui.UserSelect,
            action,
            row,
            placeholder=placeholder,
            min_values=min_values,
            max_values=max_values,
        )

    def role_select(
        self,
        *,
        action: str = "",
        placeholder: str | None = None,
        min_values: int = 1,
        max_values: int = 1,
        row: int | None = None,
    ) -> Persistent:
        """A menu of the server's roles (`press.values`: discord.Role)."""
        return self._menu(
            discord.ui.RoleSelect,
            action,
            row,
            placeholder=placeholder,
            min_values=min_values,
            max_values=max_values,
        )

    def channel_select(
        self,
        *,
        action: str = "",
        channel_types: Sequence[discord.ChannelType] = (),
        placeholder: str | None = None,
        min_values: int = 1,
        max_values: int = 1,
        row: int | None = None,
    ) -> Persistent:
        """A menu of channels (`press.values`: app_commands.AppCommandChannel or Thread)."""
        return self._menu(
            discord.ui.ChannelSelect,
            action,
            row,
            placeholder=placeholder,
            min_values=min_values,
            max_values=max_values,
            channel_types=list(channel_types),
        )


def view(*items: Item[Any]) -> discord.ui.View:
    """A view of persistent components, to send with a message. It is stopped at once:
    discord.py then keeps nothing of it (the components are answered by `Persistent`)."""
    out = discord.ui.View(timeout=None)
    for item in items:
        out.add_item(item)
    out.stop()
    return out


class Persistent(DynamicItem[Item[Any]], template=ids.TEMPLATE):
    """Every component of ours, as discord.py dispatches it: to `run`."""

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: Item[Any], match: Any, /
    ) -> Persistent:
        return cls(item)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        custom = CustomId.parse(self.custom_id)
        if custom is not None:
            await run(interaction, custom, values=list(getattr(self.item, "values", [])))


def without(message: discord.Message | None, custom: CustomId) -> discord.ui.View | None:
    """The message's components, less those of `custom`'s handler and state; None if it has
    none of those."""
    if message is None:
        return None
    rest = discord.ui.View.from_message(message, timeout=None)
    ours = [
        item
        for item in rest.children
        if (other := CustomId.parse(str(getattr(item, "custom_id", "") or ""))) is not None
        and other.same_state(custom)
    ]
    if not ours:
        return None
    for item in ours:
        rest.remove_item(item)
    rest.stop()  # nothing of it stays in discord.py's memory
    return rest


@dataclass
class Press:
    """A press of a component (or a form's submission), as its handler sees it."""

    interaction: discord.Interaction[Any]
    custom: CustomId
    handler: Handler
    values: list[Any] = field(default_factory=list)  # a menu's choices
    fields: dict[str, Any] = field(default_factory=dict)  # a form's values, checked
    state: Any = None
    owner_id: int | None = None
    expires_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    # How the press was deferred: "update", "reply" (a public "thinking..."), "reply_ephemeral".
    _deferred: str | None = field(default=None, repr=False)

    @property
    def bot(self) -> Guildhouse:
        client: Guildhouse = self.interaction.client
        return client

    @property
    def user(self) -> discord.User | discord.Member:
        return self.interaction.user

    @property
    def guild(self) -> discord.Guild | None:
        return self.interaction.guild

    @property
    def channel(self) -> Any:
        return self.interaction.channel

    @property
    def message(self) -> discord.Message | None:
        """The message whose component was pressed (or whose button opened the form)."""
        return self.interaction.message

    @property
    def action(self) -> str:
        return self.custom.action

    @property
    def responded(self) -> bool:
        return self.interaction.response.is_done()

    # -- answering ---------------------------------------------------------------------------

    async def reply(
        self,
        content: str | None = None,
        *,
        embed: discord.Embed | None = None,
        view: discord.ui.View | None = None,
        ephemeral: bool = False,
    ) -> None:
        """A new message: the first response, or a follow-up (which fills a "thinking" one)."""
        async with self._lock:
            response = self.interaction.response
            if not response.is_done():
                await response.send_message(
                    content, embed=embed or MISSING, view=view or MISSING, ephemeral=ephemeral
                )
                return
            await self.interaction.followup.send(
                content or MISSING,
                embed=embed or MISSING,
                view=view or MISSING,
                ephemeral=ephemeral,
                wait=True,
            )
            self._deferred = None

    async def update(
        self,
        content: str | None = MISSING,
        *,
        embed: discord.Embed | None = MISSING,
        view: discord.ui.View | None = MISSING,
    ) -> None:
        """Edit the message whose component was pressed."""
        async with self._lock:
            response = self.interaction.response
            if not response.is_done():
                await response.edit_message(content=content, embed=embed, view=view)
            elif self._deferred in ("update", None) or self.interaction.message is None:
                await self.interaction.edit_original_response(
                    content=content, embed=embed, view=view
                )
            else:  # deferred with "thinking": @original is that message, not this one
                await self.interaction.message.edit(content=content, embed=embed, view=view)

    async def open(
        self,
        form: type[Handler],
        *,
        state: Any = None,
        owner: int | None = None,
        values: dict[str, str] | None = None,
    ) -> None:
        """Show a form (a modal); its submission goes to `form.submitted`, on any worker.
        `values` fills its fields in. Only as the first response, and quickly (no waiting on
        anything before it): Discord shows no "thinking" state for a modal."""
        from bot.components.forms import modal_for

        ref = await form.new(self.bot, owner=self.user.id if owner is None else owner, state=state)
        await self.show(modal_for(ref, values or {}))

    async def show(self, modal: discord.ui.Modal) -> None:
        async with self._lock:
            await self.interaction.response.send_modal(modal)

    async def tell(self, text: str) -> None:
        """A short ephemeral message for the user."""
        async with self._lock:
            response = self.interaction.response
            if not response.is_done():
                await response.send_message(text, ephemeral=True)
                return
            if self._deferred == "reply":
                # The first follow-up would take the place of a public "thinking..." message,
                # public itself: that one goes, so that this stays between bot and user.
                with contextlib.suppress(discord.HTTPException):
                    await self.interaction.delete_original_response()
            await self.interaction.followup.send(text, ephemeral=True, wait=True)
            self._deferred = None

    async def acknowledge(self) -> None:
        """Answer without a change the user sees (a second press of a single-use button)."""
        async with self._lock:
            if self.interaction.response.is_done():
                return
            if self.interaction.message is not None:
                await self.interaction.response.defer()
                return
        await self.tell("That is done already.")

    async def expire(self) -> None:
        """Tell the user the component has expired, and take its siblings off the message."""
        rest = without(self.interaction.message, self.custom)
        if rest is not None:
            async with self._lock:
                if not self.interaction.response.is_done():
                    await self.interaction.response.edit_message(view=rest)
                elif self._deferred == "update":  # @original is the component's message
                    with contextlib.suppress(discord.HTTPException):
                        await self.interaction.edit_original_response(view=rest)
        await self.tell(EXPIRED)

    async def retire(self) -> None:
        """Take this component (and the others of its state) off its message: a single-use
        one, once used."""
        rest = without(self.interaction.message, self.custom)
        if rest is not None:
            await self.update(view=rest)

    async def defer(self) -> None:
        """Acknowledge now and answer later (within 15 minutes), as the handler's `defer` says;
        done by itself 2 s after the interaction, if the handler has not answered by then."""
        async with self._lock:
            if self.interaction.response.is_done():
                return
            kind = self.handler.defer
            if kind == "update" and self.interaction.message is not None:
                await self.interaction.response.defer()
                self._deferred = "update"
            else:
                ephemeral = kind == "reply_ephemeral"
                await self.interaction.response.defer(thinking=True, ephemeral=ephemeral)
                self._deferred = "reply_ephemeral" if ephemeral else "reply"

    async def _defer_at_deadline(self) -> None:
        created = self.interaction.created_at.timestamp()
        age = min(max(0.0, time.time() - created), DEFER_AFTER)
        await asyncio.sleep(DEFER_AFTER - age)
        try:
            await self.defer()
        except discord.HTTPException as exc:
            log.warning("could not defer a slow %s press: %s", self.custom.name, exc)


async def run(
    interaction: discord.Interaction[Any],
    custom: CustomId,
    *,
    values: list[Any] | None = None,
    fields: dict[str, str] | None = None,
) -> None:
    """Answer a press of one of our components, or the submission of one of our forms."""
    task = asyncio.current_task()
    if task is not None:
        task.set_name(TASK_NAME)
    bot: Guildhouse = interaction.client
    cls = REGISTRY.get(custom.name)
    handler = cls() if cls is not None else Handler()
    press = Press(interaction, custom, handler, values=values or [])
    outcome = "ok"
    deadline: asyncio.Task[None] | None = None
    try:
        if not getattr(bot, "accepting", True):
            await press.tell(RESTARTING)
            return
        if not await _first_delivery(bot, interaction.id):
            outcome = "repeat"
            return
        deadline = asyncio.create_task(press._defer_at_deadline())
        from bot.components.forms import Form

        # A form's custom_id comes back in a submission, any other in a press: the other way
        # round it is not a live component of ours.
        known = cls is not None and (fields is not None) == isinstance(handler, Form)
        stored = await handler.load(bot, custom) if known else None
        if stored is None or stored.expires_at < time.time():
            outcome = "expired"
            await press.expire()
            return
        press.state, press.owner_id, press.expires_at = (
            stored.data,
            stored.owner_id,
            stored.expires_at,
        )
        refusal = await handler.allowed(press)
        if refusal is not None:
            outcome = "refused"
            await press.tell(refusal)
            return
        if fields is not None:
            from bot.components.forms import check

            if not await check(press, handler, fields):
                outcome = "user_error"
                return
        claim = f"{interaction.message.id if interaction.message else 0}:{custom}"
        if handler.once and not await _claim(bot, claim, stored.expires_at):
            outcome = "repeat"
            await press.acknowledge()
            return
        try:
            await handler.pressed(press)
        except BaseException:
            if handler.once:  # let them try again
                await _release(bot, claim)
            raise
    except Exception as exc:
        outcome = await _failed(press, exc)
    finally:
        if deadline is not None:
            deadline.cancel()
        metrics.COMMANDS.labels(
            str(bot.config.cluster_id), f"component:{custom.name}", "component", outcome
        ).inc()


async def _claim(bot: Guildhouse, key: str, expires_at: float) -> bool:
    try:
        return await component_state.claim(bot.pool, key, expires_at)
    except Exception as exc:
        if outages.note(exc, "single-use components") != outages.POSTGRES:
            raise
    # While PostgreSQL is away, Redis holds the claim: a double click is a second apart, and
    # what a Redis wipe would forget, PostgreSQL is back to keep for the next press.
    return await component_state.claim_in_redis(bot.redis, bot.keys, key, expires_at)


async def _release(bot: Guildhouse, key: str) -> None:
    with contextlib.suppress(Exception):
        await component_state.release(bot.pool, key)
    with contextlib.suppress(Exception):
        await component_state.release_in_redis(bot.redis, bot.keys, key)


async def _first_delivery(bot: Guildhouse, interaction_id: int) -> bool:
    try:
        return await component_state.first_delivery(bot.redis, bot.keys, interaction_id)
    except Exception as exc:
        # Without Redis a retry can't be told from a first delivery: answer it (Discord
        # refuses a second answer; what must act once claims in PostgreSQL).
        if outages.note(exc, "component interactions") is None:
            raise
        return True


async def _failed(press: Press, exc: Exception) -> str:
    """Tell the user what went wrong, as the central command error handler would."""
    cause = errors.unwrap(exc)
    server = errors.unavailable(exc)
    if isinstance(cause, errors.UserError):
        text, outcome = str(cause), "user_error"
    elif server is not None:
        outages.SERVERS[server].failed(cause, f"component {press.custom.name}")
        text, outcome = errors.UNAVAILABLE[server], "unavailable"
    elif isinstance(cause, discord.NotFound) and cause.code == 10062:
        # Too late for Discord: nobody can be told anything any more.
        log.warning("a %s press was answered after Discord's deadline", press.custom.name)
        return "late"
    else:
        error_id = secrets.token_hex(4)
        log.error(
            "unexpected error in component %s (error id %s)",
            press.custom.name,
            error_id,
            exc_info=(type(cause), cause, cause.__traceback__),
            extra={"error_id": error_id},
        )
        text = f"Something went wrong on our side (error id `{error_id}`). It has been logged."
        outcome = "error"
    try:
        await press.tell(text)
    except discord.HTTPException as err:
        log.info("could not deliver an error message: %s", err)
    return outcome


# -- installing ---------------------------------------------------------------------------------

SWEEP_EVERY = 600.0


@dataclass
class Installed:
    """What `install` set up in a worker; `close` takes it down."""

    bot: Guildhouse
    sweeper: asyncio.Task[None] | None = None

    async def close(self) -> None:
        self.bot.remove_dynamic_items(Persistent)
        self.bot.remove_listener(_on_interaction, "on_interaction")
        if self.sweeper is not None:
            self.sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sweeper


async def install(bot: Guildhouse, *, sweep_every: float = SWEEP_EVERY) -> Installed:
    """Answer our components and forms in this worker, and sweep expired state."""
    from bot.components import forms, paginator  # noqa: F401 - their handlers register

    bot.add_dynamic_items(Persistent)
    bot.add_listener(_on_interaction, "on_interaction")
    return Installed(bot, asyncio.create_task(_sweep(bot, sweep_every), name="component-sweeper"))


async def _on_interaction(interaction: discord.Interaction[Any]) -> None:
    # Forms: discord.py routes a modal's submission only to a modal object it keeps in memory;
    # ours are kept nowhere, so their submissions are taken here.
    if interaction.type is not discord.InteractionType.modal_submit:
        return
    data: dict[str, Any] = interaction.data or {}  # type: ignore[assignment]
    custom = CustomId.parse(str(data.get("custom_id", "")))
    if custom is None:
        return
    from bot.components.forms import submitted_values

    await run(interaction, custom, fields=submitted_values(data.get("components") or []))


async def _sweep(bot: Guildhouse, every: float) -> None:
    while True:
        # Every worker sweeps; spread out, so they don't all at once (it is idempotent).
        await asyncio.sleep(every * (0.5 + secrets.randbelow(1000) / 1000))
        try:
            gone = await component_state.sweep(bot.pool)
            if gone:
                log.debug("swept %d expired component rows", gone)
        except Exception as exc:
            if outages.note(exc, "the component sweeper") is None:
                log.exception("could not sweep expired component state")
