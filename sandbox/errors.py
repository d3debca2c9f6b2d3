"""The sandbox's errors: Discord's JSON error bodies, and the control API's 400s."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


class BadInput(ApiError, ValueError):
    """A control API request that is wrong: a 400 whose message starts with the field's path
    (`options.create.when: ...`), so whoever drives the sandbox sees what to fix. Its `errors`
    nest like Discord's form errors. Also a ValueError, for callers of the Python API."""

    def __init__(self, path: str, message: str, code: int = 50035) -> None:
        errors: dict[str, Any] = {"_errors": [{"code": "INVALID", "message": message}]}
        for key in reversed(path.split(".")):
            errors = {key: errors}
        super().__init__(400, code, f"{path}: {message}", errors)
        self.path = path
