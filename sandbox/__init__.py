"""A local Discord: gateway and REST (API v10) that unmodified clients run against.

It imports nothing from the bot: it is Discord, seen from outside.
"""

from sandbox.server import Sandbox, SandboxConfig

__all__ = ["Sandbox", "SandboxConfig"]
