"""The sandbox's message components, select menus, modals and interaction callbacks, as Discord
has them: the limits and their error bodies, every callback type, follow-ups, ephemeral
messages, the 3 s deadline; the payloads checked against Discord's OpenAPI description."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from sandbox import Sandbox, SandboxConfig
from sandbox.ratelimit import Limits

pytestmark = pytest.mark.timeout(60)

OPENAPI = Path(__file__).resolve().parents[2].parent / "shared" / "discord-api" / "openapi.json"

EPHEMERAL = 64


@pytest.fixture(scope="module")
def openapi() -> Registry:
    if not OPENAPI.is_file():
        pytest.skip(f"Discord's OpenAPI description is not here ({OPENAPI.name} absent)")
    spec = json.loads(OPENAPI.read_text())
    registry: Registry = Registry().with_resource("urn:discord", DRAFT202012.create_resource(spec))
    return registry


def conforms(registry: Registry, schema: str, value: Any) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": f"urn:discord#/components/schemas/{schema}"}, registry=registry
    )
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300]
        for e in validator.iter_errors(value)
    ]


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    # A short deadline, so that a late answer is quick to provoke; rate limits out of the way.
    config = SandboxConfig(
        guilds=2, members=6, interaction_deadline=1.0, limits=Limits(route_limit=1000)
    )
    async with Sandbox(config) as s:
        yield s


@pytest.fixture
async def http(sb: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {sb.token}"}
    async with aiohttp.ClientSession(base_url=sb.base_url, headers=headers) as session:
        yield session


@dataclass
class Where:
    guild_id: int
    channel_id: int
    user_id: int  # a plain member
    other_id: int  # another one
    role_id: int
    voice_id: int


@pytest.fixture
def where(sb: Sandbox) -> Where:
    guild = next(iter(sb.world.guilds.values()))
    text = next(c.id for c in guild.channels.values() if c.type == 0)
    voice = next(c.id for c in guild.channels.values() if c.type == 2)
    members = [m for m in guild.members if m not in (sb.world.bot.id, guild.owner_id)]
    role = next(r for r in guild.roles.values() if r.name == "Moderators")
    return Where(guild.id, text, members[0], members[1], role.id, voice)


def row(*items: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(items)}


def button(custom_id: str, label: str = "b", **more: Any) -> dict[str, Any]:
    return {"type": 2, "style": 2, "label": label, "custom_id": custom_id, **more}


def string_select(custom_id: str, n: int = 3, **more: Any) -> dict[str, Any]:
    options = [{"label": f"Option {i}", "value": f"v{i}"} for i in range(n)]
    return {"type": 3, "custom_id": custom_id, "options": options, **more}


EVERY_KIND = [
    row(button("a"), button("b", emoji={"name": "🎲"}), button("c", disabled=True)),
    row(string_select("pick", max_values=2, placeholder="Choose")),
    row({"type": 5, "custom_id": "who"}),
    row({"type": 6, "custom_id": "role", "min_values": 1, "max_values": 2}),
    row({"type": 8, "custom_id": "where", "channel_types": [0]}),
]

MODAL: dict[str, Any] = {
    "custom_id": "bet:form",
    "title": "Place a bet",
    "components": [
        row(
            {
                "type": 4,
                "custom_id": "amount",
                "label": "Amount",
                "style": 1,
                "min_length": 1,
                "max_length": 6,
            }
        ),
        {
            "type": 18,
            "label": "Why",
            "component": {"type": 4, "custom_id": "why", "style": 2, "required": False},
        },
        {"type": 18, "label": "Who", "component": {"type": 5, "custom_id": "for"}},
    ],
}


async def post(http: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with http.post(path, json=body) as resp:
        return resp.status, (await resp.json() if resp.status != 204 else None)


async def send(http: aiohttp.ClientSession, channel_id: int, components: Any) -> tuple[int, Any]:
    return await post(
        http, f"/api/v10/channels/{channel_id}/messages", {"content": "x", "components": components}
    )


async def callback(
    http: aiohttp.ClientSession, payload: dict[str, Any], body: dict[str, Any]
) -> tuple[int, Any]:
    path = f"/api/v10/interactions/{payload['id']}/{payload['token']}/callback?with_response=true"
    return await post(http, path, body)


def webhook(sb: Sandbox, payload: dict[str, Any], tail: str = "") -> str:
    return f"/api/v10/webhooks/{sb.world.application_id}/{payload['token']}{tail}"


def errors_at(body: dict[str, Any], *path: str) -> list[str]:
    node = body.get("errors", {})
    for key in path:
        node = node.get(key, {})
    return [e["code"] for e in node.get("_errors", [])]


# -- the limits, with Discord's error bodies ------------------------------------------------------


async def test_component_limits_answer_discords_form_errors(
    http: aiohttp.ClientSession, where: Where
) -> None:
    ch = where.channel_id
    cases: list[tuple[Any, tuple[str, ...], str]] = [
        ([row(button(f"r{i}")) for i in range(6)], ("components",), "BASE_TYPE_BAD_LENGTH"),
        (
            [row(*(button(f"b{i}") for i in range(6)))],
            ("components", "0", "components"),
            "BASE_TYPE_BAD_LENGTH",
        ),
        (
            [row(string_select("s", n=26))],
            ("components", "0", "components", "0", "options"),
            "BASE_TYPE_BAD_LENGTH",
        ),
        (
            [row(button("x" * 101))],
            ("components", "0", "components", "0", "custom_id"),
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            [row(button("same")), row(button("same"))],
            ("components", "1", "components", "0", "custom_id"),
            "COMPONENT_CUSTOM_ID_DUPLICATED",
        ),
        (
            [row(button("a"), string_select("s"))],
            ("components", "0", "components", "1"),
            "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
        ),
        (
            [row({"type": 2, "style": 1, "label": "no id"})],
            ("components", "0", "components", "0", "custom_id"),
            "BASE_TYPE_REQUIRED",
        ),
        ([button("loose")], ("components", "0", "type"), "UNION_TYPE_CHOICES"),
    ]
    for components, path, code in cases:
        status, body = await send(http, ch, components)
        assert status == 400 and body["code"] == 50035, (path, body)
        assert body["message"] == "Invalid Form Body"
        assert code in errors_at(body, *path), (path, body)
    # At the limits exactly, all is well.
    full = [row(*(button(f"{r}.{i}") for i in range(5))) for r in range(4)]
    full.append(row(string_select("s", n=25, max_values=25)))
    full[0]["components"][0]["custom_id"] = "y" * 100
    status, body = await send(http, ch, full)
    assert status == 200, body


async def test_messages_with_every_kind_of_component_match_openapi(
    sb: Sandbox, http: aiohttp.ClientSession, where: Where, openapi: Registry
) -> None:
    status, msg = await send(http, where.channel_id, EVERY_KIND)
    assert status == 200, msg
    assert conforms(openapi, "MessageResponse", msg) == []
    # Discord numbers the components and fills in a menu's defaults.
    ids = [c["id"] for r in msg["components"] for c in [r, *r["components"]]]
    assert sorted(ids) == list(range(1, len(ids) + 1))
    who = msg["components"][2]["components"][0]
    assert who["min_values"] == who["max_values"] == 1
    payload = await sb.click(where.channel_id, where.user_id, int(msg["id"]), "a")
    assert conforms(openapi, "MessageResponse", payload["message"]) == []
    assert payload["data"] == {"custom_id": "a", "component_type": 2}


# -- picking from menus ---------------------------------------------------------------------------


async def test_every_select_kind_sends_values_and_resolved(
    sb: Sandbox, http: aiohttp.ClientSession, where: Where, openapi: Registry
) -> None:
    _, msg = await send(http, where.channel_id, EVERY_KIND)
    mid, ch, user = int(msg["id"]), where.channel_id, where.user_id
    picked = await sb.pick(ch, user, mid, "pick", ["v2", "v0"])
    assert picked["data"] == {"custom_id": "pick", "component_type": 3, "values": ["v2", "v0"]}

    who = await sb.pick(ch, user, mid, "who", [str(where.other_id)])
    data = who["data"]
    assert data["component_type"] == 5 and data["values"] == [str(where.other_id)]
    assert data["resolved"]["users"][str(where.other_id)]["id"] == str(where.other_id)
    member = data["resolved"]["members"][str(where.other_id)]
    assert "user" not in member and member["permissions"]
    assert conforms(openapi, "UserResponse", data["resolved"]["users"][str(where.other_id)]) == []

    role = await sb.pick(ch, user, mid, "role", [where.role_id])
    resolved_role = role["data"]["resolved"]["roles"][str(where.role_id)]
    assert conforms(openapi, "GuildRoleResponse", resolved_role) == []

    channel = await sb.pick(ch, user, mid, "where", [str(ch)])
    assert channel["data"]["resolved"]["channels"][str(ch)]["type"] == 0

    refused: list[tuple[str, Any, str]] = [
        ("pick", ["v9"], "values[0]"),  # not an option
        ("pick", ["v0", "v1", "v2"], "values"),  # more than max_values
        ("pick", [], "values"),  # fewer than min_values
        ("pick", ["v1", "v1"], "values[1]"),
        ("pick", "v1", "values"),
        ("who", ["1"], "values[0]"),  # nobody
        ("role", [str(where.other_id)], "values[0]"),  # a user, not a role
        ("where", [str(where.voice_id)], "values[0]"),  # a voice channel: channel_types [0]
        ("a", ["v1"], "values"),  # a button takes no values
        ("c", None, "custom_id"),  # disabled
        ("nope", ["v1"], "custom_id"),
    ]
    for custom_id, values, field in refused:
        with pytest.raises(ValueError, match="^" + re.escape(field)):
            await sb.users.user_component(ch, user, mid, custom_id, values)
    with pytest.raises(ValueError, match=r"^values"):
        await sb.users.user_component(ch, user, mid, "pick", None)


# -- callback types -------------------------------------------------------------------------------


async def test_update_deferred_update_and_original_edits(
    sb: Sandbox, http: aiohttp.ClientSession, where: Where, openapi: Registry
) -> None:
    _, msg = await send(http, where.channel_id, [row(button("go"))])
    clicked = await sb.click(where.channel_id, where.user_id, int(msg["id"]), "go")
    status, answer = await callback(http, clicked, {"type": 7, "data": {"content": "updated"}})
    assert status == 200, answer
    assert conforms(openapi, "InteractionCallbackResponse", answer) == []
    assert answer["resource"]["type"] == 7 and answer["resource"]["message"]["id"] == msg["id"]
    assert sb.rest.messages[where.channel_id][int(msg["id"])]["content"] == "updated"
    # Twice is once too often.
    status, again = await callback(http, clicked, {"type": 4, "data": {"content": "x"}})
    assert status == 400 and again["code"] == 40060

    deferred = await sb.click(where.channel_id, where.user_id, int(msg["id"]), "go")
    status, answer = await callback(http, deferred, {"type": 6})
    assert status == 200 and conforms(openapi, "InteractionCallbackResponse", answer) == []
    assert answer["interaction"]["response_message_id"] == msg["id"]
    url = webhook(sb, deferred, "/messages/@original")
    async with http.patch(url, json={"content": "later", "components": []}) as resp:
        edited = await resp.json()
        assert resp.status == 200 and edited["id"] == msg["id"]
    assert conforms(openapi, "MessageResponse", edited) == []
    assert edited["content"] == "later" and edited["components"] == []
    state = sb.users.interaction_state(int(deferred["id"]))
    assert state["response_type"] == 6 and not state["late"]


async def test_a_deferred_message_is_filled_by_the_first_followup(
    sb: Sandbox, http: aiohttp.ClientSession, where: Where, openapi: Registry
) -> None:
    _, msg = await send(http, where.channel_id, [row(button("go"))])
    clicked = await sb.click(where.channel_id, where.user_id, int(msg["id"]), "go")
    status, answer = await callback(http, clicked, {"type": 5, "data": {"flags": EPHEMERAL}})
    assert status == 200 and answer["interaction"]["response_message_loading"] is True
    (thinking,) = await sb.outbox(where.channel_id, after=1)
    assert thinking["kind"] == "deferred" and thinking["ephemeral"]
    url = webhook(sb, clicked)
    # The first follow-up takes the "thinking" message's place, ephemeral as the deferral said
    # (its own flags don't count); the next one is a message of its own.
    status, first = await post(http, url, {"content": "done"})
    assert status == 200 and first["id"] == thinking["message_id"]
    assert first["flags"] == EPHEMERAL and first["content"] == "done"
    status, second = await post(http, url, {"content": "and more", "flags": EPHEMERAL})
    assert status == 200 and second["id"] != first["id"]
    assert conforms(openapi, "MessageResponse", second) == []
    assert second["interaction_metadata"]["interacted_message_id"] == msg["id"]
    # Nobody else sees an ephemeral message, and the channel's own routes don't know it.
    async with http.get(f"/api/v10/channels/{where.channel_id}/messages/{second['id']}") as resp:
        assert resp.status == 404 and (await resp.json())["code"] == 10008
    async with http.delete(url + f"/messages/{second['id']}") as resp:
        assert resp.status == 404  # Discord can't delete an ephemeral follow-up either


async def test_buttons_on_an_ephemeral_message_are_for_its_user(
    sb: Sandbox, http: aiohttp.ClientSession, where: Where
) -> None:
    _, msg = await send(http, where.channel_id, [row(button("go"))])
    clicked = await sb.click(where.channel_id, where.user_id, int(msg["id"]), "go")
    data = {"content": "only you", "flags": EPHEMERAL, "components": [row(button("mine"))]}
    status, answer = await callback(http, clicked, {"type": 4, "data": data})
    assert status == 200
    private = int(answer["resource"]["message"]["id"])
    with pytest.raises(ValueError, match=r"^message_id"):
        await sb.click(where.channel_id, where.other_id, private, "mine")
    again = await sb.click(where.channel_id, where.user_id, private, "mine")
    assert again["message"]["flags"] & EPHEMERAL


async def test_modal_open_fill_and_submit(
    sb: Sandbox, http: aiohttp.ClientSession, where: Where, openapi: Registry
) -> None:
    assert conforms(openapi, "ModalInteractionCallbackRequestData", MODAL) == []
    _, msg = await send(http, where.channel_id, [row(button("bet"))])
    clicked = await sb.click(where.channel_id, where.user_id, int(msg["id"]), "bet")
    status, _ = await callback(http, clicked, {"type": 9, "data": MODAL})
    assert status == 200
    (shown,) = [e for e in await sb.outbox(where.channel_id) if e["kind"] == "modal"]
    assert shown["title"] == "Place a bet" and shown["user_id"] == str(where.user_id)
    assert [i["custom_id"] for i in shown["inputs"]] == ["amount", "why", "for"]
    async with http.get("/_sandbox/modals", params={"user_id": str(where.user_id)}) as resp:
        assert (await resp.json())["modal"]["custom_id"] == "bet:form"

    ch, user = where.channel_id, where.user_id
    refused = [
        ({"amount": "1234567"}, "fields.amount"),  # max_length 6
        ({"why": "no amount"}, "fields.amount"),  # required
        ({"amount": "5", "nope": "x"}, "fields.nope"),
        ({"amount": 5}, "fields.amount"),
        ({"amount": "1\n2"}, "fields.amount"),  # a one-line input
        ({"amount": "5", "for": ["1"]}, "fields.for[0]"),  # nobody
        ("5", "fields"),
    ]
    for fields, field in refused:
        with pytest.raises(ValueError, match="^" + re.escape(field)):
            await sb.submit(ch, user, fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^custom_id"):
        await sb.submit(ch, user, {"amount": "5"}, "other:form")
    with pytest.raises(ValueError, match=r"^fields"):
        await sb.submit(ch, where.other_id, {"amount": "5"})  # no modal on their screen

    submitted = await sb.submit(ch, user, {"amount": "50", "for": [str(where.other_id)]})
    data = submitted["data"]
    assert data["custom_id"] == "bet:form"
    assert data["components"][0]["components"][0] == {
        "type": 4,
        "id": data["components"][0]["components"][0]["id"],
        "custom_id": "amount",
        "value": "50",
    }
    assert data["components"][1]["component"]["value"] == ""  # left empty: optional
    assert data["components"][2]["component"]["values"] == [str(where.other_id)]
    assert str(where.other_id) in data["resolved"]["members"]
    assert submitted["message"]["id"] == msg["id"]  # opened from that message's button
    # Submitting closes it.
    with pytest.raises(ValueError, match=r"^fields"):
        await sb.submit(ch, user, {"amount": "50", "for": [str(user)]})
    # A modal's answer can update the message whose button opened it.
    status, answer = await callback(http, submitted, {"type": 7, "data": {"content": "bet"}})
    assert status == 200 and answer["resource"]["message"]["content"] == "bet"
    assert conforms(openapi, "InteractionCallbackResponse", answer) == []


async def test_modal_answer_metadata_and_callback_types_by_interaction(
    sb: Sandbox, http: aiohttp.ClientSession, where: Where, openapi: Registry
) -> None:
    app = sb.world.application_id
    command = {"name": "bet", "type": 1, "description": "bet"}
    async with http.put(f"/api/v10/applications/{app}/commands", json=[command]) as resp:
        assert resp.status == 200
    slash = await sb.send_interaction(where.channel_id, where.user_id, "bet")
    status, body = await callback(http, slash, {"type": 7, "data": {"content": "no"}})
    assert status == 400 and "type" in body["errors"]  # a command has no message to update
    status, _ = await callback(http, slash, {"type": 9, "data": MODAL})
    assert status in (200, 204)
    submitted = await sb.submit(
        where.channel_id, where.user_id, {"amount": "7", "for": [str(where.user_id)]}
    )
    assert "message" not in submitted
    status, body = await callback(http, submitted, {"type": 9, "data": MODAL})
    assert status == 400  # no modal in answer to a modal
    status, body = await callback(http, submitted, {"type": 6})
    assert status == 400  # opened from a command: no message to update
    status, answer = await callback(http, submitted, {"type": 4, "data": {"content": "ok"}})
    assert status == 200, answer
    message = answer["resource"]["message"]
    assert conforms(openapi, "MessageResponse", message) == []
    meta = message["interaction_metadata"]
    assert meta["type"] == 5 and meta["triggering_interaction_metadata"]["type"] == 2
    bad_modals = [
        ({**MODAL, "title": "t" * 46}, ("data", "title")),
        ({**MODAL, "components": []}, ("data", "components")),
        ({**MODAL, "components": MODAL["components"] * 2}, ("data", "components")),
        ({**MODAL, "custom_id": "c" * 101}, ("data", "custom_id")),
    ]
    for bad, path in bad_modals:
        fresh = await sb.send_interaction(where.channel_id, where.user_id, "bet")
        status, body = await callback(http, fresh, {"type": 9, "data": bad})
        assert status == 400 and body["code"] == 50035 and errors_at(body, *path), (path, body)


# -- the deadline and retries ---------------------------------------------------------------------


async def test_a_callback_after_the_deadline_is_an_unknown_interaction(
    sb: Sandbox, http: aiohttp.ClientSession, where: Where
) -> None:
    _, msg = await send(http, where.channel_id, [row(button("go"))])
    late = await sb.click(where.channel_id, where.user_id, int(msg["id"]), "go")
    await asyncio.sleep(sb.config.interaction_deadline + 0.2)
    status, body = await callback(http, late, {"type": 6})
    assert status == 404 and body == {"message": "Unknown Interaction", "code": 10062}
    state = sb.users.interaction_state(int(late["id"]))
    assert state["late"] and state["response_type"] is None
    # Follow-ups need an answer first: there is none.
    status, body = await post(http, webhook(sb, late), {"content": "x"})
    assert status == 404 and body["code"] == 10015


async def test_redelivery_repeats_the_same_interaction(
    sb: Sandbox, http: aiohttp.ClientSession, where: Where
) -> None:
    _, msg = await send(http, where.channel_id, [row(button("go"))])
    first = await sb.click(where.channel_id, where.user_id, int(msg["id"]), "go")
    again = await sb.redeliver(int(first["id"]))
    assert again["id"] == first["id"] and again["token"] == first["token"]
    async with http.post("/_sandbox/redeliveries", json={"id": first["id"]}) as resp:
        assert resp.status == 200 and (await resp.json())["id"] == first["id"]
    async with http.post("/_sandbox/redeliveries", json={"id": "1"}) as resp:
        assert resp.status == 400 and (await resp.json())["message"].startswith("id: ")
    async with http.get(f"/_sandbox/interactions/{first['id']}") as resp:
        assert (await resp.json())["response_type"] is None
    async with http.get("/_sandbox/interactions/abc") as resp:
        assert resp.status == 400 and (await resp.json())["message"].startswith("id: ")
