"""A local Discord: gateway and REST (API v10) that unmodified clients run against.

It imports nothing from the bot: it is Discord, seen from outside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.server import Sandbox, SandboxConfig

__all__ = ["Sandbox", "SandboxConfig"]


def __getattr__(name: str) -> Any:
    # Loaded on first use rather than with the package, so that `python -m sandbox` runs its
    # first line (noting its parent process, for --exit-with-parent) before aiohttp and the
    # rest are imported.
    if name in __all__:
        from sandbox import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
