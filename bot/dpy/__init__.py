"""Every place Guildhouse reaches past discord.py's public API, one module a patch, and the
check that they fit the discord.py that is installed.

- chat_state.py    the gateway parser: chat on a light path (bot/chat_light_path.py)
- guild_memory.py  guilds in less memory: caches made on first use, the bot's own user and
                   repeated values shared between guilds (the connection state chat_state.py
                   makes derives from it)
- heartbeat.py     a heartbeat's send time recorded before it is sent (upstream's fix, until
                   a release has it)
- compression.py   the gateway connections' transport compression
- urls.py          the REST and gateway base URLs: Discord or the sandbox
- http_session.py  client middlewares (the REST limiter) on discord.py's aiohttp sessions,
                   and gateway reads without a timer per event
- shard_hooks.py   a shard's launch and IDENTIFY through our queue, and a fatal close of one
                   shard kept from ending the client
- keep_alive.py    a shard's heartbeat latency and the age of its last event
- zombie.py        a connection whose heartbeat goes un-ACKed until the next is closed and
                   RESUMEd (Discord's zombied connection), installed after heartbeat.py
- parser_guard.py  a gateway event whose payload a parser can't read dropped and logged,
                   not the end of the client (chat_state.py's state installs it)

Each says in its docstring what it relies on, and lists in `RELIES_ON` the names it reaches
(and the parameters of those it overrides or wraps). They were written for the discord.py
versions in `SUPPORTED`, which the pin in pyproject.toml repeats. `check()` runs in each
worker before anything connects: another version, or one of those names gone, stops the
worker with one line, not a feature at run time. To move to another discord.py: read each
module against its source, mend what moved, then widen `SUPPORTED` and the pin together.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import discord

from bot.dpy import (
    chat_state,
    compression,
    guild_memory,
    heartbeat,
    http_session,
    keep_alive,
    parser_guard,
    shard_hooks,
    urls,
    zombie,
)

# From (inclusive) and to (exclusive): the versions the patches were written for. Patch
# releases of 2.7 keep the internals these use (heartbeat.py stands aside in one that carries
# its fix); the names are checked all the same.
SUPPORTED = ((2, 7, 1), (2, 8, 0))
# The same range as pyproject.toml states it (a test holds the two together).
REQUIREMENT = "discord.py>=2.7.1,<2.8"

PATCHES: tuple[ModuleType, ...] = (
    chat_state,
    guild_memory,
    heartbeat,
    compression,
    urls,
    http_session,
    shard_hooks,
    keep_alive,
    zombie,
    parser_guard,
)


class Unsupported(RuntimeError):
    """The installed discord.py is not one the patches were written for (one line)."""


def installed_version() -> str:
    v = discord.version_info
    suffix = "" if v.releaselevel == "final" else f" ({v.releaselevel} {v.serial})"
    return f"{v.major}.{v.minor}.{v.micro}{suffix}"


def check() -> None:
    """Raise Unsupported, with one line naming the discord.py found and the versions the
    patches were written for, unless it is one of those and has every name they reach."""
    v = discord.version_info
    found = installed_version()
    if not SUPPORTED[0] <= (v.major, v.minor, v.micro) < SUPPORTED[1]:
        raise Unsupported(
            f"discord.py {found} is installed, but Guildhouse's patches to it (bot/dpy/) were "
            f"written for {REQUIREMENT}, as pyproject.toml pins it: install one of those, or "
            f"update bot/dpy/ for {found}"
        )
    missing = [
        f"{problem} (bot/dpy/{module.__name__.rsplit('.', 1)[-1]}.py)"
        for module in PATCHES
        for spec in module.RELIES_ON
        if (problem := _problem(spec)) is not None
    ]
    if missing:
        raise Unsupported(
            f"discord.py {found} is not as Guildhouse's patches to it expect: "
            f"{'; '.join(missing)}; update bot/dpy/ for {found}"
        )


def _problem(spec: str) -> str | None:
    """What is wrong with one of RELIES_ON's entries, `module:Owner.name` or
    `module:Owner.name(params)`, in this discord.py; None if nothing is."""
    target, _, params = spec.partition("(")
    module_name, _, path = target.partition(":")
    obj: object = importlib.import_module(module_name)
    parts = path.split(".")
    for i, part in enumerate(parts):
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif i == len(parts) - 1 and isinstance(obj, type) and _set_in_init(obj, part):
            return None  # an instance attribute
        else:
            return f"no {module_name}.{path}"
    if params and _parameters(obj) != params.rstrip(")"):
        return f"{module_name}.{path} takes ({_parameters(obj)}), not ({params}"
    return None


def _set_in_init(cls: type, name: str) -> bool:
    """Whether an `__init__` of `cls` (or of a class it derives from) assigns or reads
    `self.<name>`: instance attributes are not on the class."""
    for klass in cls.__mro__:
        code = getattr(vars(klass).get("__init__"), "__code__", None)
        if code is not None and name in code.co_names:
            return True
    return False


def _parameters(func: object) -> str:
    """A function's parameters as written: `self, shard_id, *, initial`."""
    try:
        signature = inspect.signature(func)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "?"
    names: list[str] = []
    star = False
    for p in signature.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            names.append(f"*{p.name}")
            star = True
        elif p.kind is p.VAR_KEYWORD:
            names.append(f"**{p.name}")
        else:
            if p.kind is p.KEYWORD_ONLY and not star:
                names.append("*")
                star = True
            names.append(p.name)
    return ", ".join(names)
