"""Reading a bot's JSON body field by field, as Discord does: every problem found is collected
and answered at once as 400 Invalid Form Body (50035) with Discord's nested `errors`
(`{"field": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": ...}]}}`); a body that is
not an object at all is `{"_errors": [DICT_TYPE_CONVERT]}`. Wording and codes follow what
Discord sends (BASE_TYPE_*, NUMBER_TYPE_*, DATE_TYPE_PARSE, ...)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sandbox.components import FormErrors
from sandbox.control import describe

SNOWFLAKE_MAX = (1 << 64) - 1
WHOLE = re.compile(r"-?[0-9]{1,25}")
MISSING: Any = object()
NOT_A_DICT = "Only dictionaries may be used in a DictType"


class Form:
    """One JSON object of a request. Each reader returns the value, or `default` when the
    field is absent (or wrong: the problem is recorded, and `check()` raises them all)."""

    def __init__(self, data: Any, path: list[str | int] | None = None, *, optional: bool = False):
        self.errors = FormErrors()
        self.path: list[str | int] = path or []
        if data is None and optional:
            data = {}
        if not isinstance(data, dict):
            self.errors.add(self.path, "DICT_TYPE_CONVERT", NOT_A_DICT)
            self.errors.raise_any()
        self.data: dict[str, Any] = data

    def check(self) -> None:
        self.errors.raise_any()

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, required: bool) -> Any:
        value = self.data.get(name, MISSING)
        if value is MISSING and required:
            self.errors.add([*self.path, name], "BASE_TYPE_REQUIRED", "This field is required")
        return value

    def string(
        self,
        name: str,
        *,
        low: int = 0,
        high: int = 4000,
        required: bool = False,
        nullable: bool = False,
        default: Any = None,
    ) -> Any:
        value = self._get(name, required)
        if value is MISSING or (value is None and nullable):
            return default
        path = [*self.path, name]
        if not isinstance(value, str):
            self.errors.add(path, "BASE_TYPE_STRING", "Must be a string.")
        elif not low <= len(value) <= high:
            if low:  # Discord says "between" when a field has both bounds
                self.errors.add(
                    path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length."
                )
            else:
                self.errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")
        return value if isinstance(value, str) and low <= len(value) <= high else default

    def integer(
        self,
        name: str,
        *,
        low: int,
        high: int,
        required: bool = False,
        nullable: bool = False,
        default: Any = None,
    ) -> Any:
        value = self._get(name, required)
        if value is MISSING or (value is None and nullable):
            return default
        path = [*self.path, name]
        if isinstance(value, str) and WHOLE.fullmatch(value):
            value = int(value)  # Discord coerces a numeric string
        if isinstance(value, bool) or not isinstance(value, int):
            self.errors.add(path, "NUMBER_TYPE_COERCE", f'Value "{_show(value)}" is not int.')
            return default
        if value < low:
            self.errors.add(
                path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}."
            )
            return default
        if value > high:
            self.errors.add(
                path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}."
            )
            return default
        return value

    def boolean(self, name: str, *, default: Any = None) -> Any:
        value = self._get(name, False)
        if value is MISSING or value is None:
            return default
        if not isinstance(value, bool):
            self.errors.add(
                [*self.path, name], "BASE_TYPE_BOOLEAN", "Must be either true or false."
            )
            return default
        return value

    def snowflake(
        self, name: str, *, required: bool = False, nullable: bool = False, default: Any = None
    ) -> Any:
        value = self._get(name, required)
        if value is MISSING or (value is None and nullable):
            return default
        return snowflake_value(self.errors, [*self.path, name], value, default)

    def snowflakes(
        self, name: str, *, low: int = 0, high: int = 1000, required: bool = False
    ) -> list[int] | None:
        """A list of snowflakes, its length within low..high."""
        value = self._get(name, required)
        if value is MISSING:
            return None
        path = [*self.path, name]
        if not isinstance(value, list):
            self.errors.add(path, "BASE_TYPE_ARRAY", "Must be an array.")
            return None
        if not low <= len(value) <= high:
            self.errors.add(
                path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length."
            )
        out = [snowflake_value(self.errors, [*path, i], v, None) for i, v in enumerate(value)]
        return [v for v in out if v is not None]

    def timestamp(self, name: str, *, nullable: bool = True) -> Any:
        """An ISO 8601 time, as seconds since the epoch (None when null)."""
        value = self._get(name, False)
        if value is MISSING or (value is None and nullable):
            return None
        try:
            if not isinstance(value, str):
                raise ValueError
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ValueError
            return parsed.timestamp()
        except (ValueError, OverflowError, OSError):
            self.errors.add(
                [*self.path, name],
                "DATE_TYPE_PARSE",
                f"Could not parse {_show(value)}. Should be ISO8601.",
            )
            return None

    def choice(self, name: str, choices: tuple[Any, ...], *, required: bool = False) -> Any:
        value = self._get(name, required)
        if value is MISSING:
            return None
        if isinstance(value, bool) or value not in choices:
            shown = ", ".join(map(str, choices))
            self.errors.add(
                [*self.path, name], "BASE_TYPE_CHOICES", f"Value must be one of {{{shown}}}."
            )
            return None
        return value


def snowflake_value(errors: FormErrors, path: list[str | int], value: Any, default: Any) -> Any:
    number = -1
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    if not 0 <= number <= SNOWFLAKE_MAX:
        errors.add(path, "NUMBER_TYPE_COERCE", f'Value "{_show(value)}" is not snowflake.')
        return default
    return number


def permission_bits(errors: FormErrors, path: list[str | int], value: Any) -> int:
    """A permission set: a string of digits (or an integer) within Discord's bits."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
        if number < 1 << 64:
            return number
    errors.add(path, "NUMBER_TYPE_COERCE", f'Value "{_show(value)}" is not int.')
    return 0


def _show(value: Any) -> str:
    return value if isinstance(value, str) and len(value) <= 40 else describe(value)
