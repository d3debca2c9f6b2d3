"""Malformed bodies and fields at every REST route: never a 5xx. A body that is not JSON is
400 50109; a JSON body of the wrong shape, or a field of the wrong type or out of range, is
400 50035 (Invalid Form Body) with Discord's nested `errors`."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moderation_kit import conforms, load_openapi

from sandbox import Sandbox, SandboxConfig
from sandbox.ratelimit import Limits
from sandbox.world import Member

OPENAPI = load_openapi()

pytestmark = pytest.mark.timeout(300)

# Field names the routes read, so that junk lands where it is looked at.
FIELDS = [
    "content", "embeds", "components", "flags", "tts", "nonce", "message_reference",
    "allowed_mentions", "attachments", "sticker_ids", "poll", "title", "description", "fields",
    "name", "value", "footer", "text", "author", "type", "data", "custom_id", "options",
    "default_member_permissions", "dm_permission", "contexts", "integration_types", "nsfw",
    "recipient_id", "nick", "roles", "communication_disabled_until", "mute", "deaf",
    "delete_message_seconds", "delete_message_days", "messages", "allow", "deny", "topic",
    "rate_limit_per_user", "message_id", "id", "filename", "style", "label", "url",
]  # fmt: skip
QUERY = ["limit", "before", "after", "with_counts", "with_response", "user_id", "action_type"]
# Strings that look like numbers to one parser and not to another.
NUMBERISH = ["--1", "²", "١٢", "1_000", " 1", "1e3", "0x10", "+5", "-0", "9" * 40, "NaN", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["", "0", "1", "-1", "9" * 25, "2024-01-01T00:00:00+00:00", "x" * 5000]),
    st.sampled_from(NUMBERISH),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=25,
)
objects = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    sb: Sandbox
    ids: dict[str, str]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """A sandbox on its own loop in a thread, for Hypothesis's synchronous examples; limits
    out of the way so that every request reaches its route."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    limits = Limits(global_limit=10**9, route_limit=10**9, invalid_limit=10**9)
    config = SandboxConfig(guilds=2, members=8, interaction_deadline=10**6, limits=limits)
    sb = Sandbox(config)
    asyncio.run_coroutine_threadsafe(sb.start(), loop).result(30)
    ids = asyncio.run_coroutine_threadsafe(_arrange(sb), loop).result(30)
    yield World(loop, sb, ids)
    asyncio.run_coroutine_threadsafe(sb.stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


async def _arrange(sb: Sandbox, ids: dict[str, str] | None = None) -> dict[str, str]:
    """Real ids for every path parameter, made again before each example (the last one may
    have deleted the message, kicked the member, answered the interaction): a message of a
    member, a command, a fresh interaction, the member back in the guild."""
    guild = next(iter(sb.world.guilds.values()))
    if ids:
        channel = guild.channels[int(ids["channel_id"])]
    else:
        channel = next(c for c in guild.channels.values() if c.name == "general")
    channel.rate_limit_per_user = 0
    user = next(u for u in guild.members if u not in (guild.owner_id, sb.world.bot.id))
    user = int(ids["user_id"]) if ids else user
    guild.bans.pop(user, None)
    if user not in guild.members:
        guild.members[user] = Member(user, [], 0.0)
    guild.members[user].communication_disabled_until = None
    channel.overwrites = []
    role = next(r for r in guild.roles.values() if r.name == "Moderators")
    msg = await sb.send_message(channel.id, user, "hello")
    sb.rest.commands[None] = {1: {"id": "1", "name": "ping", "type": 1, "options": []}}
    interaction = await sb.send_interaction(channel.id, user, "ping")
    return {
        "guild_id": str(guild.id),
        "channel_id": str(channel.id),
        "user_id": str(user),
        "role_id": str(role.id),
        "message_id": msg["id"],
        "application_id": str(sb.world.application_id),
        "command_id": "1",
        "interaction_id": interaction["id"],
        "token": interaction["token"],
        "webhook_id": str(sb.world.application_id),
        "overwrite_id": str(role.id),
        "emoji": "%F0%9F%91%8D",
    }


def refresh(world: World) -> None:
    future = asyncio.run_coroutine_threadsafe(_arrange(world.sb, world.ids), world.loop)
    world.ids = future.result(30)


def _path(world: World, template: str, junk: str | None) -> str:
    path = template
    for name, value in world.ids.items():
        path = path.replace("{" + name + "}", value if junk is None else junk)
    return path


def _routes(world: World) -> list[tuple[str, str]]:
    return [(r.method, r.template) for r in world.sb.rest.routes]


async def _send(
    sb: Sandbox, method: str, path: str, data: bytes | None, query: dict[str, str], *, ctype: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {sb.token}", "Content-Type": ctype}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, sb.api_url + path, data=data, params=query, headers=headers) as r,
    ):
        text = await r.text()
        return r.status, (json.loads(text) if text else None)


def send(world: World, *args: Any, ctype: str = "application/json") -> tuple[int, Any]:
    future = asyncio.run_coroutine_threadsafe(_send(world.sb, *args, ctype=ctype), world.loop)
    return future.result(30)


def answered_as_discord(status: int, body: Any, what: str) -> None:
    assert status < 500, (what, status, body)
    if 400 <= status < 500 and status != 429:
        # Discord's error object (its OpenAPI description types a field error's code as an
        # integer, where Discord sends, and its reference documents, strings such as
        # "BASE_TYPE_REQUIRED": the nested `errors` are checked against the reference).
        assert conforms(OPENAPI, "Error", body) == [], (what, body)
        if "errors" in body:
            assert shaped_like_discords(body["errors"]), (what, body)
    if status == 400:
        assert isinstance(body, dict) and isinstance(body.get("code"), int), (what, body)
        if body["code"] == 50035:
            assert isinstance(body.get("errors"), dict) and body["errors"], (what, body)


def shaped_like_discords(node: Any) -> bool:
    """Form errors as Discord's reference shows them: objects keyed by field (or index) down
    to `_errors`, a list of {code: "SOME_CODE", message}."""
    if not isinstance(node, dict) or not node:
        return False
    for key, value in node.items():
        if key == "_errors":
            ok = (
                isinstance(value, list)
                and value
                and all(
                    isinstance(e, dict)
                    and isinstance(e.get("code"), str)
                    and e["code"].isupper()
                    and isinstance(e.get("message"), str)
                    for e in value
                )
            )
        else:
            ok = shaped_like_discords(value)
        if not ok:
            return False
    return True


def test_a_body_that_is_not_json_is_50109_everywhere(world: World) -> None:
    for method, template in _routes(world):
        if method in ("GET", "DELETE"):
            continue
        refresh(world)
        status, body = send(world, method, _path(world, template, None), b"{nope", {})
        what = f"{method} {template}"
        if status == 400:
            assert body["code"] == 50109, (what, body)
        else:  # refused before the body is read (an unknown object, a permission)
            assert status in (403, 404), (what, status, body)


def test_json_of_the_wrong_shape_is_a_form_error(world: World) -> None:
    wrong = [b"[]", b'"text"', b"12", b"true"]
    for method, template in _routes(world):
        if method in ("GET", "DELETE"):
            continue
        for raw in wrong:
            refresh(world)
            status, body = send(world, method, _path(world, template, None), raw, {})
            answered_as_discord(status, body, f"{method} {template} {raw!r}")
            if status == 400 and template.endswith("/messages") and method == "POST":
                assert body["code"] == 50035, body
                assert body["errors"]["_errors"][0]["code"] == "DICT_TYPE_CONVERT"


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pick=st.integers(min_value=0),
    body=st.one_of(objects, json_values, st.binary(max_size=40)),
    query=st.dictionaries(
        st.sampled_from(QUERY), st.text(max_size=12) | st.sampled_from(NUMBERISH), max_size=3
    ),
    junk_path=st.one_of(st.none(), st.sampled_from(["0", "abc", "9" * 25, "-1", "%00", "²"])),
)
def test_junk_at_every_route_is_never_a_5xx(
    world: World, pick: int, body: Any, query: dict[str, str], junk_path: str | None
) -> None:
    refresh(world)
    routes = _routes(world)
    method, template = routes[pick % len(routes)]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = send(world, method, _path(world, template, junk_path), raw, query)
    answered_as_discord(status, answer, f"{method} {template} {raw[:300]!r} {query}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.one_of(objects.map(json.dumps), st.text(max_size=30)),
    name=st.sampled_from(["files[0]", "files[x]", "file", "other", "payload_json"]),
    content=st.binary(max_size=64),
)
def test_junk_multipart_is_never_a_5xx(
    world: World, payload: str, name: str, content: bytes
) -> None:
    form = aiohttp.FormData()
    form.add_field("payload_json", payload, content_type="application/json")
    form.add_field(name, content, filename="f.bin", content_type="application/octet-stream")
    channel = world.ids["channel_id"]
    future = asyncio.run_coroutine_threadsafe(_multipart(world.sb, channel, form), world.loop)
    status, answer = future.result(30)
    answered_as_discord(status, answer, f"multipart {name} {payload[:200]!r}")


async def _multipart(sb: Sandbox, channel: str, form: aiohttp.FormData) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {sb.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{sb.api_url}/channels/{channel}/messages", data=form, headers=headers) as r,
    ):
        text = await r.text()
        return r.status, (json.loads(text) if text else None)


def test_a_truncated_multipart_body_is_50109(world: World) -> None:
    raw = b'--xx\r\nContent-Disposition: form-data; name="payload_json"\r\n\r\n{"con'
    status, body = send(
        world,
        "POST",
        f"/channels/{world.ids['channel_id']}/messages",
        raw,
        {},
        ctype="multipart/form-data; boundary=xx",
    )
    assert status == 400 and body["code"] in (50109, 50035), body


def test_numberish_strings_in_queries_and_fields(world: World) -> None:
    """Each of these once reached int() somewhere: all are 400s (or read as numbers)."""
    for method, template in _routes(world):
        for text in NUMBERISH:
            refresh(world)
            query = dict.fromkeys(QUERY, text) if method == "GET" else {}
            body = None if method in ("GET", "DELETE") else dict.fromkeys(FIELDS, text)
            raw = None if body is None else json.dumps(body).encode()
            status, answer = send(world, method, _path(world, template, None), raw, query)
            answered_as_discord(status, answer, f"{method} {template} {text!r}")
