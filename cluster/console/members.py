"""Who the console speaks as: a member's standing (member, moderator, admin, owner) from
Discord's permission bits, as the bot's levels read them (bot/checks.py), and picking a member
of a given standing."""

from __future__ import annotations

from typing import Any

from cluster.console.errors import ChatError

STANDINGS = ("member", "moderator", "admin", "owner")

# Discord's permission bits the bot's levels are built from (bot/checks.py).
ADMINISTRATOR, MANAGE_GUILD = 1 << 3, 1 << 5
MOD_PERMISSIONS = (1 << 13) | (1 << 1) | (1 << 2) | (1 << 40)  # messages, kick, ban, timeout


def guild_permissions(guild: dict[str, Any], user_id: int) -> int:
    roles = {int(r["id"]): int(r.get("permissions") or 0) for r in guild.get("roles") or []}
    member = next((m for m in guild.get("members") or [] if int(m.get("id", 0)) == user_id), None)
    value = roles.get(int(guild["id"]), 0)  # @everyone's id is the guild's
    for rid in (member or {}).get("roles") or []:
        value |= roles.get(int(rid), 0)
    return value


def standing_of(guild: dict[str, Any], user_id: int) -> str:
    """The member's standing by Discord permissions, as the bot's levels see it by default
    (a server's own moderator and admin roles, set with `settings modrole`, aside)."""
    if int(guild.get("owner_id") or 0) == user_id:
        return "owner"
    perms = guild_permissions(guild, user_id)
    if perms & (ADMINISTRATOR | MANAGE_GUILD):
        return "admin"
    if perms & MOD_PERMISSIONS:
        return "moderator"
    return "member"


def pick_member(guild: dict[str, Any], wanted: str) -> tuple[int, str]:
    """A member of the server with the standing wanted: (user id, a note when it is not
    exactly that standing). The server's owner is an admin too (bot/checks.py): when no other
    member has admin rights, --as admin speaks as the owner, and says so."""
    members = [int(m["id"]) for m in guild.get("members") or []]
    if not members:
        members = [int(m) for m in guild.get("member_ids") or []]
    exact = [m for m in members if standing_of(guild, m) == wanted]
    if exact:
        return exact[0], ""
    if wanted == "admin":
        return int(guild["owner_id"]), "for an admin: no other member here has admin rights"
    raise ChatError(f"no {wanted} in this server; pick someone with --user ID")
