"""What a feature subclasses: a `Handler` (a family of persistent components with a name, a
lifetime, who may press them, single use) and `Who`; `REGISTRY` maps handler names to them.

`Handler.new` keeps a state for the handler's components (in the custom_id when it fits, else
in PostgreSQL) and returns the `Ref` that makes them (items.py). What happens on a press:
dispatch.py; what the handler gets: press.py.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from bot.checks import Level, level_of
from bot.components import ids
from bot.components import state as component_state
from bot.components.ids import CustomId
from bot.components.items import Ref

if TYPE_CHECKING:
    from bot.components.press import Press
    from bot.guildhouse import Guildhouse

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
            # A press has no command context (bot/context.py): its level is looked up here.
            and await level_of(press.bot, press.user, press.guild) >= Level.MODERATOR
        ):
            return None
        return self.refusal

    async def pressed(self, press: Press) -> None:
        raise NotImplementedError
