"""Buttons, select menus and forms that outlive restarts and work on every worker.

A feature defines a handler once (a `Handler` subclass with a name) and sends its components
with a state; whichever worker receives a press, now or after `guildhouse restart --rolling`,
answers it from the custom_id (which names the handler and carries the state, or the id of the
state in PostgreSQL) and nothing else:

    class Vote(components.Handler, name="vote"):
        ttl = 24 * 3600
        who = components.Who.ANYONE
        once = True                 # one press per message: a double click votes once

        async def pressed(self, press: components.Press) -> None:
            await press.reply(f"{press.user.mention} voted {press.action}", ephemeral=True)

    ref = await Vote.new(bot, owner=ctx.author.id, state={"poll": 7})
    await ctx.send("Vote!", view=components.view(ref.button("Yes", action="yes"),
                                                 ref.button("No", action="no")))

See dispatch.py for what a press goes through (expiry, who may press, retries, single use,
the 3 s deadline), handlers.py for `Handler`, items.py for the buttons and menus it makes,
press.py for what a handler gets, forms.py for modals, paginator.py for the paginator, ids.py
for the custom_id.
"""

from __future__ import annotations

from bot.components.dispatch import TASK_NAME, Installed, install
from bot.components.forms import Field, FieldError, Form, Number, Text, open_form
from bot.components.handlers import Handler, Who
from bot.components.items import Persistent, Ref, view
from bot.components.paginator import send_pages
from bot.components.press import EXPIRED, Press

__all__ = [
    "EXPIRED",
    "TASK_NAME",
    "Field",
    "FieldError",
    "Form",
    "Handler",
    "Installed",
    "Number",
    "Persistent",
    "Press",
    "Ref",
    "Text",
    "Who",
    "install",
    "open_form",
    "send_pages",
    "view",
]
