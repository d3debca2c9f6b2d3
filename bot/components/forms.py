"""Forms: Discord modals whose fields are checked, submitted to whichever worker gets them.

A `Form` is a handler whose components are text fields; `press.open(MyForm, state=...)`
shows it. Discord's client enforces a field's length and `required`; what it can't (a number
that is a number, in range) is checked here, and a submission with a mistake is answered with
an ephemeral message naming every wrong field, and a button that opens the form again with
what the user typed (kept in Redis for 15 minutes: losing it costs only the retyping).
"""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING, Any, ClassVar

import discord

from bot import outages
from bot.components import state
from bot.components.handlers import REGISTRY, Handler
from bot.components.ids import CustomId
from bot.components.items import Ref, view
from bot.components.press import Press
from bot.ui import safe_text

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

MAX_FIELDS = 5  # Discord shows at most 5 fields in a modal
TITLE_MAX = 45
LABEL_MAX = 45
TEXT_MAX = 4000


class FieldError(ValueError):
    """A field's value can't be used; the message says why, for the user."""


class Field:
    """One text field of a form. Its name in the form's class is its custom_id in the modal
    and its key in `press.fields`."""

    def __init__(
        self,
        label: str,
        *,
        required: bool = True,
        placeholder: str | None = None,
        description: str | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
        paragraph: bool = False,
    ) -> None:
        if not 1 <= len(label) <= LABEL_MAX:
            raise ValueError(f"a field's label has 1-{LABEL_MAX} characters: {label!r}")
        self.label = label
        self.required = required
        self.placeholder = placeholder
        self.description = description
        self.min_length = min_length
        self.max_length = max_length
        self.paragraph = paragraph
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def component(self, value: str | None) -> discord.ui.Label[Any]:
        return discord.ui.Label(
            text=self.label,
            description=self.description,
            component=discord.ui.TextInput(
                custom_id=self.name,
                style=discord.TextStyle.paragraph if self.paragraph else discord.TextStyle.short,
                placeholder=self.placeholder,
                default=value[:TEXT_MAX] if value else None,
                required=self.required,
                min_length=self.min_length,
                max_length=self.max_length,
            ),
        )

    def parse(self, raw: str) -> Any:
        """The value to hand the form, or FieldError. An empty optional field is None."""
        text = raw.strip()
        if not text:
            if self.required:
                raise FieldError("is required")
            return None
        low, high = self.min_length or 0, self.max_length or TEXT_MAX
        if len(text) > high:
            raise FieldError(f"must be at most {high} characters long, not {len(text)}")
        if len(text) < low:
            raise FieldError(f"must be at least {low} characters long, not {len(text)}")
        return self.convert(text)

    def convert(self, text: str) -> Any:
        return text


class Text(Field):
    """Free text (a line, or a paragraph)."""


class Number(Field):
    """A number, whole unless `whole=False`, within `low`..`high` if given."""

    def __init__(
        self,
        label: str,
        *,
        low: float | None = None,
        high: float | None = None,
        whole: bool = True,
        **options: Any,
    ) -> None:
        options.setdefault("max_length", 20)
        super().__init__(label, **options)
        self.low, self.high, self.whole = low, high, whole

    def convert(self, text: str) -> int | float:
        try:
            value: int | float = int(text) if self.whole else float(text.replace(",", "."))
        except ValueError:
            kind = "a whole number" if self.whole else "a number"
            raise FieldError(f"must be {kind}, not `{shown(text)}`") from None
        if not math.isfinite(value):  # "nan", "inf"
            raise FieldError(f"must be a number, not `{shown(text)}`")
        if self.low is not None and value < self.low:
            raise FieldError(f"must be at least {self.low:g}")
        if self.high is not None and value > self.high:
            raise FieldError(f"must be at most {self.high:g}")
        return value


def shown(text: str) -> str:
    """User input fit to quote in `code`."""
    return safe_text(text, 60).replace("`", "'")


class Form(Handler):
    """A modal. Declare its fields as class attributes (at most 5) and override `submitted`:

    class Stake(Form, name="stake"):
        title = "Place a bet"
        amount = Number("Amount", low=1, high=1000)

        async def submitted(self, press: Press) -> None:
            await press.reply(f"You bet {press.fields['amount']}.")
    """

    title: ClassVar[str] = ""
    inputs: ClassVar[dict[str, Field]] = {}
    # A form is for whoever opened it; its submission comes from them.
    action_room = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Field] = {}
        for klass in reversed(cls.__mro__):
            found.update({k: v for k, v in vars(klass).items() if isinstance(v, Field)})
        cls.inputs = found
        if cls.name and not 1 <= len(found) <= MAX_FIELDS:
            raise ValueError(f"form {cls.name!r} has {len(found)} fields; 1 to 5 fit a modal")
        if cls.name and not 1 <= len(cls.title) <= TITLE_MAX:
            raise ValueError(f"form {cls.name!r} needs a title of 1-{TITLE_MAX} characters")

    async def pressed(self, press: Press) -> None:
        await self.submitted(press)

    async def submitted(self, press: Press) -> None:
        raise NotImplementedError


def modal(form: type[Form], custom_id: str, values: dict[str, Any]) -> discord.ui.Modal:
    shown_modal = discord.ui.Modal(title=form.title, custom_id=custom_id)
    for name, field in form.inputs.items():
        value = values.get(name)
        shown_modal.add_item(field.component(value if isinstance(value, str) else None))
    # Stopped, discord.py keeps nothing of it: its submission is ours, on any worker.
    shown_modal.stop()
    return shown_modal


def modal_for(ref: Ref, values: dict[str, Any]) -> discord.ui.Modal:
    form = ref.handler
    if not issubclass(form, Form):
        raise TypeError(f"{form.__name__} is not a Form")
    return modal(form, ref.custom_id(), values)


async def open_form(
    bot: Guildhouse,
    interaction: discord.Interaction[Any],
    form: type[Form],
    *,
    state: Any = None,
    values: dict[str, str] | None = None,
) -> None:
    """Show a form in answer to an interaction that is not a component's (a slash command)."""
    ref = await form.new(bot, owner=interaction.user.id, state=state)
    await interaction.response.send_modal(modal_for(ref, values or {}))


def submitted_values(components: list[Any]) -> dict[str, Any]:
    """{custom_id: text, or a menu's values} of a modal's submitted components, whether its
    fields came in action rows or in labels."""
    out: dict[str, Any] = {}

    def visit(item: Any) -> None:
        if not isinstance(item, dict):
            return
        if "custom_id" in item and item.get("type") != 1:
            out[str(item["custom_id"])] = item.get("value", item.get("values", ""))
        for inner in item.get("components") or []:
            visit(inner)
        visit(item.get("component"))

    for component in components:
        visit(component)
    return out


def validate(form: type[Form], raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The parsed values of a submission, and a line for each field that is wrong."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, field in form.inputs.items():
        text = raw.get(name)
        try:
            values[name] = field.parse(text if isinstance(text, str) else "")
        except FieldError as exc:
            problems.append(f"**{field.label}** {exc}.")
    return values, problems


async def check(press: Press, form: Handler, raw: dict[str, Any]) -> bool:
    """True and `press.fields` set if the submission is right; else the user is told what to
    fix (ephemeral), with a button to fix it."""
    assert isinstance(form, Form)
    values, problems = validate(type(form), raw)
    if not problems:
        press.fields = values
        return True
    bot = press.bot
    again = None
    token = secrets.token_urlsafe(9)
    try:
        await state.keep_for_retry(
            bot.redis, bot.keys, token, {"custom_id": str(press.custom), "values": raw}
        )
        ref = await Retry.new(bot, owner=press.user.id, state=token)
        again = view(ref.button("Fix it", style=discord.ButtonStyle.primary, emoji="✏️"))
    except Exception as exc:
        if outages.note(exc, "a form's retry") is None:
            raise
    await press.reply("That didn't work:\n" + "\n".join(problems), view=again, ephemeral=True)
    return False


class Retry(Handler, name="retry"):
    """The "Fix it" button under a form's mistakes: the same form again, filled in."""

    ttl = state.INTERACTION_LIFE
    action_room = 0
    refusal = "That form is someone else's."

    async def pressed(self, press: Press) -> None:
        bot = press.bot
        kept = await state.for_retry(bot.redis, bot.keys, str(press.state))
        custom = CustomId.parse(str((kept or {}).get("custom_id", "")))
        form = REGISTRY.get(custom.name) if custom is not None else None
        if kept is None or custom is None or form is None or not issubclass(form, Form):
            await press.expire()
            return
        values = kept.get("values")
        await press.show(modal(form, str(custom), values if isinstance(values, dict) else {}))
