"""The components a handler puts on messages: `Ref` (one state of a handler) makes buttons
and menus whose custom_id names the handler and carries the state; `view` sends them;
`Persistent` is how discord.py hands any of them, in any worker, to dispatch.py; `without`
takes a state's components off a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord.ui import DynamicItem, Item

from bot.components import ids
from bot.components.ids import CustomId

if TYPE_CHECKING:
    from bot.components.handlers import Handler


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
            from bot.components.dispatch import run

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
