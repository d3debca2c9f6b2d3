"""Message components and modals, as Discord takes them from a bot and hands them to a user.

A bot's components are checked as Discord checks them (5 action rows, 5 buttons or one select
per row, 25 options, `custom_id` at most 100 characters and unique in the message, ...), every
problem answered in one 400 with Discord's nested form errors. What is kept, and what messages
and interactions carry afterwards, is the response form: every component numbered (`id`),
select defaults filled in, nulls left out, as Discord gives them back.

On the user's side (the control API), a click, a pick from a menu or a filled-in modal is
checked as Discord's client would allow it: only components that are there and enabled, only
options a menu offers, as many as it allows, only ids of things that exist, text within the
input's limits. Each refusal is a `BadInput` naming the field.

Components v2 (flag IS_COMPONENTS_V2) are numbered and their interactive parts checked; their
layout rules are not emulated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sandbox.control import CHANNEL, MENTIONABLE, ROLE, USER, OptionResolver, describe, snowflake
from sandbox.errors import ApiError, BadInput

if TYPE_CHECKING:
    from sandbox.world import Channel, Guild, World

ACTION_ROW, BUTTON, STRING_SELECT, TEXT_INPUT = 1, 2, 3, 4
USER_SELECT, ROLE_SELECT, MENTIONABLE_SELECT, CHANNEL_SELECT = 5, 6, 7, 8
SECTION, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE, SEPARATOR = 9, 10, 11, 12, 13, 14
CONTAINER, LABEL = 17, 18
SELECTS = (STRING_SELECT, USER_SELECT, ROLE_SELECT, MENTIONABLE_SELECT, CHANNEL_SELECT)
# What each entity select's values are, in the terms of slash command options (whose
# resolution of ids the sandbox already has).
SELECT_OPTION_TYPE = {
    USER_SELECT: USER,
    ROLE_SELECT: ROLE,
    MENTIONABLE_SELECT: MENTIONABLE,
    CHANNEL_SELECT: CHANNEL,
}
LINK, PREMIUM = 5, 6
IS_COMPONENTS_V2 = 1 << 15

MAX_ROWS = 5
ROW_WIDTH = 5
MAX_OPTIONS = 25
MAX_V2_COMPONENTS = 40
CUSTOM_ID_MAX = 100
BUTTON_LABEL_MAX = 80
PLACEHOLDER_MAX = 150
OPTION_TEXT_MAX = 100
MODAL_TITLE_MAX = 45
MODAL_ROWS = 5
INPUT_LABEL_MAX = 45
INPUT_TEXT_MAX = 4000
INPUT_PLACEHOLDER_MAX = 100


class FormErrors:
    """Discord's "Invalid Form Body": every problem found, nested by its path."""

    def __init__(self) -> None:
        self.errors: dict[str, Any] = {}

    def add(self, path: list[str | int], code: str, message: str) -> None:
        node = self.errors
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def length(self, path: list[str | int], value: Any, low: int, high: int) -> None:
        """A string field's length, with Discord's wording."""
        if not isinstance(value, str):
            self.add(path, "BASE_TYPE_STRING", "Must be a string.")
        elif len(value) > high:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")
        elif len(value) < low:
            self.add(path, "BASE_TYPE_MIN_LENGTH", f"Must be {low} or more in length.")

    def items(self, path: list[str | int], value: Any, low: int, high: int) -> list[Any] | None:
        """A list field, its length checked; None if it isn't a list at all."""
        if not isinstance(value, list):
            self.add(path, "BASE_TYPE_ARRAY", "Must be an array.")
            return None
        if not low <= len(value) <= high:
            self.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")
        return value

    def integer(self, path: list[str | int], value: Any, low: int, high: int) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, "NUMBER_TYPE_COERCE", f"Value {describe(value)} is not int.")
        elif value < low:
            self.add(
                path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}."
            )
        elif value > high:
            self.add(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}.")

    def raise_any(self) -> None:
        if self.errors:
            raise ApiError(400, 50035, "Invalid Form Body", self.errors)


class _Numbering:
    """Discord numbers a message's components in order, skipping the ids the bot chose."""

    def __init__(self, taken: set[int]) -> None:
        self.taken = taken
        self.next = 1

    def __call__(self, component: dict[str, Any]) -> None:
        given = component.get("id")
        if isinstance(given, int) and not isinstance(given, bool):
            return
        while self.next in self.taken:
            self.next += 1
        component["id"] = self.next
        self.taken.add(self.next)


def _ids(components: Any) -> set[int]:
    return {
        c["id"]
        for c in walk(components)
        if isinstance(c.get("id"), int) and not isinstance(c.get("id"), bool)
    }


def walk(components: Any) -> Iterator[dict[str, Any]]:
    """Every component, containers and rows before what they hold."""
    if isinstance(components, list):
        for item in components:
            yield from walk(item)
    elif isinstance(components, dict):
        yield components
        for key in ("components", "accessory", "component"):
            yield from walk(components.get(key))


def find(components: Any, custom_id: str) -> dict[str, Any] | None:
    """The interactive component with this custom_id, wherever it sits."""
    return next((c for c in walk(components) if c.get("custom_id") == custom_id), None)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


# -- a bot's message components ------------------------------------------------------------------


def message_components(value: Any, flags: int = 0) -> list[dict[str, Any]]:
    """A message's `components` as the bot sent them, checked; returned in response form."""
    if value is None:
        return []
    errors = FormErrors()
    v2 = bool(flags & IS_COMPONENTS_V2)
    if errors.items(["components"], value, 0, MAX_V2_COMPONENTS if v2 else MAX_ROWS) is None:
        errors.raise_any()
    components: list[dict[str, Any]] = _drop_nulls(value)
    seen: dict[str, list[str | int]] = {}
    for i, component in enumerate(components):
        path: list[str | int] = ["components", i]
        if not isinstance(component, dict):
            errors.add(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
            continue
        kind = component.get("type")
        if kind == ACTION_ROW:
            _row(component, path, errors, seen)
        elif v2 and kind in (SECTION, TEXT_DISPLAY, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER):
            _v2(component, path, errors, seen)
        else:
            allowed = "(1, 9, 10, 12, 13, 14, 17)" if v2 else "(1,)"
            errors.add(
                [*path, "type"],
                "UNION_TYPE_CHOICES",
                f'Value of field "type" must be one of {allowed}.',
            )
    if v2 and sum(1 for _ in walk(components)) > MAX_V2_COMPONENTS:
        errors.add(
            ["components"],
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {MAX_V2_COMPONENTS} or fewer in length.",
        )
    errors.raise_any()
    number = _Numbering(_ids(components))
    for component in walk(components):
        number(component)
        if component.get("type") in SELECTS:
            component.setdefault("min_values", 1)
            component.setdefault("max_values", 1)
    return components


def _v2(
    component: dict[str, Any],
    path: list[str | int],
    errors: FormErrors,
    seen: dict[str, list[str | int]],
) -> None:
    """The interactive parts of a components v2 layout (its layout rules are not checked)."""
    if component.get("type") == ACTION_ROW:
        _row(component, path, errors, seen)
        return
    accessory = component.get("accessory")
    if isinstance(accessory, dict) and accessory.get("type") == BUTTON:
        _button(accessory, [*path, "accessory"], errors, seen)
    inner = component.get("components")
    if isinstance(inner, list):
        for j, item in enumerate(inner):
            if isinstance(item, dict):
                _v2(item, [*path, "components", j], errors, seen)


def _row(
    row: dict[str, Any],
    path: list[str | int],
    errors: FormErrors,
    seen: dict[str, list[str | int]],
) -> None:
    items = errors.items([*path, "components"], row.get("components"), 1, ROW_WIDTH)
    if items is None:
        return
    width = 0
    for j, item in enumerate(items):
        where: list[str | int] = [*path, "components", j]
        if not isinstance(item, dict):
            errors.add(where, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
            continue
        kind = item.get("type")
        if kind == BUTTON:
            width += 1
            _button(item, where, errors, seen)
        elif kind in SELECTS:
            width += ROW_WIDTH
            _select(item, where, errors, seen)
        else:
            errors.add(
                [*where, "type"],
                "UNION_TYPE_CHOICES",
                'Value of field "type" must be one of (2, 3, 5, 6, 7, 8).',
            )
            continue
        if width > ROW_WIDTH:
            errors.add(
                where,
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            )


def _custom_id(
    item: dict[str, Any],
    path: list[str | int],
    errors: FormErrors,
    seen: dict[str, list[str | int]],
) -> None:
    custom_id = item.get("custom_id")
    if custom_id is None:
        errors.add([*path, "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
        return
    errors.length([*path, "custom_id"], custom_id, 1, CUSTOM_ID_MAX)
    if isinstance(custom_id, str):
        if custom_id in seen:
            errors.add(
                [*path, "custom_id"],
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated",
            )
        seen[custom_id] = path


def _button(
    item: dict[str, Any],
    path: list[str | int],
    errors: FormErrors,
    seen: dict[str, list[str | int]],
) -> None:
    style = item.get("style")
    if style not in (1, 2, 3, 4, LINK, PREMIUM):
        errors.add(
            [*path, "style"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4, 5, 6}."
        )
        return
    if "label" in item:
        errors.length([*path, "label"], item["label"], 0, BUTTON_LABEL_MAX)
    if style == LINK:
        if not isinstance(item.get("url"), str):
            errors.add([*path, "url"], "BASE_TYPE_REQUIRED", "This field is required")
        if "custom_id" in item:
            errors.add(
                [*path, "custom_id"],
                "COMPONENT_INVALID_FIELD",
                "A link button cannot have a custom id",
            )
    elif style != PREMIUM:
        _custom_id(item, path, errors, seen)


def _select(
    item: dict[str, Any],
    path: list[str | int],
    errors: FormErrors,
    seen: dict[str, list[str | int]],
) -> None:
    _custom_id(item, path, errors, seen)
    if "placeholder" in item:
        errors.length([*path, "placeholder"], item["placeholder"], 0, PLACEHOLDER_MAX)
    errors.integer([*path, "min_values"], item.get("min_values"), 0, MAX_OPTIONS)
    errors.integer([*path, "max_values"], item.get("max_values"), 1, MAX_OPTIONS)
    low, high = item.get("min_values", 1), item.get("max_values", 1)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        errors.add(
            [*path, "min_values"],
            "SELECT_COMPONENT_MIN_VALUES_TOO_HIGH",
            "min_values must be less than or equal to max_values",
        )
    if item.get("type") != STRING_SELECT:
        return
    options = errors.items([*path, "options"], item.get("options"), 1, MAX_OPTIONS)
    if options is None:
        return
    values: set[str] = set()
    for k, option in enumerate(options):
        where: list[str | int] = [*path, "options", k]
        if not isinstance(option, dict):
            errors.add(where, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
            continue
        errors.length([*where, "label"], option.get("label"), 1, OPTION_TEXT_MAX)
        errors.length([*where, "value"], option.get("value"), 1, OPTION_TEXT_MAX)
        if "description" in option:
            errors.length([*where, "description"], option["description"], 0, OPTION_TEXT_MAX)
        value = option.get("value")
        if isinstance(value, str):
            if value in values:
                errors.add(
                    [*where, "value"],
                    "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                    "Select component option values must be unique",
                )
            values.add(value)


# -- a bot's modal ----------------------------------------------------------------------------


def modal(data: Any) -> dict[str, Any]:
    """The `data` of a MODAL callback (type 9), checked; returned as the user sees it."""
    shown: dict[str, Any]
    errors = FormErrors()
    if not isinstance(data, dict):
        errors.add(["data"], "BASE_TYPE_REQUIRED", "This field is required")
        errors.raise_any()
    data = shown = _drop_nulls(data)
    custom_id = data.get("custom_id")
    if custom_id is None:
        errors.add(["data", "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
    else:
        errors.length(["data", "custom_id"], custom_id, 1, CUSTOM_ID_MAX)
    title = data.get("title")
    if title is None:
        errors.add(["data", "title"], "BASE_TYPE_REQUIRED", "This field is required")
    else:
        errors.length(["data", "title"], title, 1, MODAL_TITLE_MAX)
    rows = errors.items(["data", "components"], data.get("components"), 1, MODAL_ROWS)
    seen: dict[str, list[str | int]] = {}
    for i, row in enumerate(rows or []):
        path: list[str | int] = ["data", "components", i]
        kind = row.get("type") if isinstance(row, dict) else None
        if kind == ACTION_ROW:
            inner = errors.items([*path, "components"], row.get("components"), 1, 1)
            if inner and isinstance(inner[0], dict):
                if inner[0].get("type") != TEXT_INPUT:
                    errors.add(
                        [*path, "components", 0, "type"],
                        "UNION_TYPE_CHOICES",
                        'Value of field "type" must be one of (4,).',
                    )
                else:
                    _text_input(inner[0], [*path, "components", 0], errors, seen, True)
        elif kind == LABEL:
            errors.length([*path, "label"], row.get("label"), 1, INPUT_LABEL_MAX)
            if "description" in row:
                errors.length([*path, "description"], row["description"], 1, OPTION_TEXT_MAX)
            inner_item = row.get("component")
            if not isinstance(inner_item, dict):
                errors.add([*path, "component"], "BASE_TYPE_REQUIRED", "This field is required")
            elif inner_item.get("type") == TEXT_INPUT:
                _text_input(inner_item, [*path, "component"], errors, seen, False)
            elif inner_item.get("type") in SELECTS:
                _select(inner_item, [*path, "component"], errors, seen)
            else:
                errors.add(
                    [*path, "component", "type"],
                    "UNION_TYPE_CHOICES",
                    'Value of field "type" must be one of (3, 4, 5, 6, 7, 8).',
                )
        elif kind != TEXT_DISPLAY:
            errors.add(
                [*path, "type"],
                "UNION_TYPE_CHOICES",
                'Value of field "type" must be one of (1, 10, 18).',
            )
    errors.raise_any()
    number = _Numbering(_ids(shown["components"]))
    for component in walk(shown["components"]):
        number(component)
        if component.get("type") in SELECTS:
            component.setdefault("min_values", 1)
            component.setdefault("max_values", 1)
    return shown


def _text_input(
    item: dict[str, Any],
    path: list[str | int],
    errors: FormErrors,
    seen: dict[str, list[str | int]],
    needs_label: bool,
) -> None:
    _custom_id(item, path, errors, seen)
    if item.get("style") not in (1, 2):
        errors.add([*path, "style"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2}.")
    if needs_label or "label" in item:
        errors.length([*path, "label"], item.get("label"), 1, INPUT_LABEL_MAX)
    errors.integer([*path, "min_length"], item.get("min_length"), 0, INPUT_TEXT_MAX)
    errors.integer([*path, "max_length"], item.get("max_length"), 1, INPUT_TEXT_MAX)
    if "value" in item:
        errors.length([*path, "value"], item["value"], 0, INPUT_TEXT_MAX)
    if "placeholder" in item:
        errors.length([*path, "placeholder"], item["placeholder"], 0, INPUT_PLACEHOLDER_MAX)


def inputs(shown: dict[str, Any]) -> list[dict[str, Any]]:
    """A modal's fields as the console shows them: custom_id, label, kind and limits."""
    out = []
    for row in shown["components"]:
        if row.get("type") == ACTION_ROW:
            item, label = row["components"][0], row["components"][0].get("label")
        elif row.get("type") == LABEL:
            item, label = row["component"], row.get("label")
        else:
            continue
        field = {
            "custom_id": item["custom_id"],
            "label": label,
            "type": item["type"],
            "required": item.get("required", item.get("min_values", 1) > 0),
        }
        for key in ("style", "min_length", "max_length", "placeholder", "value"):
            if key in item:
                field[key] = item[key]
        if item["type"] == STRING_SELECT:
            field["options"] = [o["value"] for o in item.get("options", [])]
        out.append(field)
    return out


# -- what a user does ---------------------------------------------------------------------------


class Picker:
    """Turns what a control API caller picks or types into the interaction data Discord's
    client would send, refusing what the client would not let a user do."""

    def __init__(self, world: World, guild: Guild | None, channel: Channel, user_id: int) -> None:
        self.resolver = OptionResolver(world, guild, channel, user_id)

    @property
    def resolved(self) -> dict[str, dict[str, Any]]:
        return self.resolver.resolved

    def values(self, component: dict[str, Any], given: Any, path: str) -> list[str]:
        """A select menu's chosen values: options it offers, or ids of what exists."""
        if not isinstance(given, list):
            raise BadInput(path, f"must be a list of the values picked, not {describe(given)}")
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        if not low <= len(given) <= high:
            raise BadInput(path, f"this menu takes {low} to {high} values, not {len(given)}")
        kind = component["type"]
        picked: list[str] = []
        for i, value in enumerate(given):
            where = f"{path}[{i}]"
            if kind == STRING_SELECT:
                offered = [o.get("value") for o in component.get("options", [])]
                if not isinstance(value, str) or value not in offered:
                    raise BadInput(where, f"must be one of the menu's values {offered}")
                text = value
            else:
                option_type = SELECT_OPTION_TYPE[kind]
                decl = {"channel_types": component.get("channel_types")}
                object_id = snowflake(value, where)
                guild = self.resolver.guild
                if (
                    kind in (USER_SELECT, MENTIONABLE_SELECT)
                    and guild is not None
                    and object_id in self.resolver.world.users
                    and object_id not in guild.members
                ):
                    # In a server, a user menu offers its members, not every user.
                    raise BadInput(where, f"user {object_id} is not a member of guild {guild.id}")
                text = str(self.resolver._resolve_id(option_type, object_id, decl, where))
            if text in picked:
                raise BadInput(where, "is picked twice")
            picked.append(text)
        return picked

    def submission(self, shown: dict[str, Any], given: Any, path: str) -> list[dict[str, Any]]:
        """A modal's submitted components, from {input custom_id: text (or a list, for a
        select)}, in the modal's own structure."""
        if not isinstance(given, dict):
            raise BadInput(
                path, f"must be an object of input custom_id: text, not {describe(given)}"
            )
        known = {f["custom_id"] for f in inputs(shown)}
        for key in given:
            if key not in known:
                raise BadInput(
                    f"{path}.{key}",
                    f"the modal has no such input (it has: {', '.join(sorted(known))})",
                )
        out: list[dict[str, Any]] = []
        for row in shown["components"]:
            kind = row.get("type")
            if kind == ACTION_ROW:
                item = row["components"][0]
                out.append(
                    {
                        "type": ACTION_ROW,
                        "id": row["id"],
                        "components": [self._input(item, given, path)],
                    }
                )
            elif kind == LABEL:
                out.append(
                    {
                        "type": LABEL,
                        "id": row["id"],
                        "component": self._input(row["component"], given, path),
                    }
                )
            else:
                out.append({"type": kind, "id": row["id"]})
        return out

    def _input(self, item: dict[str, Any], given: dict[str, Any], path: str) -> dict[str, Any]:
        custom_id = item["custom_id"]
        where = f"{path}.{custom_id}"
        base = {"type": item["type"], "id": item["id"], "custom_id": custom_id}
        if item["type"] in SELECTS:
            values = given.get(custom_id, [])
            return {**base, "values": self.values(item, values, where)}
        value = given.get(custom_id)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise BadInput(where, f"must be text, not {describe(value)}")
        required = item.get("required", True)
        if required and not value:
            raise BadInput(where, "is required")
        low, high = item.get("min_length", 0), item.get("max_length", INPUT_TEXT_MAX)
        if value and not low <= len(value) <= high:
            raise BadInput(where, f"must be {low} to {high} characters long")
        if item.get("style") == 1 and "\n" in value:
            raise BadInput(where, "a one-line input takes no line breaks")
        return {**base, "value": value}
