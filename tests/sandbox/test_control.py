"""The control API (`/_sandbox/...`) over real HTTP: every bad input is a 400 that names the
field, never a 500; and slash command options in either form."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from sandbox import Sandbox, SandboxConfig

pytestmark = pytest.mark.timeout(60)

COMMANDS = [
    {
        "name": "echo",
        "type": 1,
        "description": "say it",
        "options": [
            {"type": 3, "name": "word", "description": "w", "required": True, "max_length": 20},
            {"type": 4, "name": "count", "description": "c", "min_value": 1, "max_value": 10},
            {"type": 6, "name": "who", "description": "u"},
            {"type": 8, "name": "role", "description": "r"},
            {"type": 7, "name": "where", "description": "ch", "channel_types": [0]},
            {"type": 5, "name": "loud", "description": "l"},
            {"type": 10, "name": "ratio", "description": "n"},
            {
                "type": 3,
                "name": "mood",
                "description": "m",
                "choices": [{"name": "Happy", "value": "happy"}, {"name": "Sad", "value": "sad"}],
            },
        ],
    },
    {
        "name": "remind",
        "type": 1,
        "description": "reminders",
        "options": [
            {
                "type": 1,
                "name": "create",
                "description": "c",
                "options": [{"type": 3, "name": "when", "description": "w", "required": True}],
            },
            {"type": 1, "name": "list", "description": "l"},
        ],
    },
]


@dataclass
class Place:
    """Where the requests happen, and a valid body for each route."""

    guild_id: int
    channel_id: int  # #general
    category_id: int
    user_id: int  # a member
    stranger_id: int  # a user who is not a member
    role_id: int
    message_id: str  # the bot's message with a "go" button, a disabled "off" one, and menus
    interaction_id: str  # the click on "go" that opened a modal for the user


MODAL = {
    "custom_id": "form",
    "title": "A form",
    "components": [
        {
            "type": 1,
            "components": [
                {"type": 4, "custom_id": "amount", "label": "Amount", "style": 1, "max_length": 6}
            ],
        }
    ],
}


async def open_modal(sb: Sandbox, http: aiohttp.ClientSession, p: Place) -> str:
    """The user clicks "go" and the bot answers with a modal: it is open on their screen."""
    clicked = await sb.click(p.channel_id, p.user_id, int(p.message_id), "go")
    path = f"/api/v10/interactions/{clicked['id']}/{clicked['token']}/callback"
    async with http.post(path, json={"type": 9, "data": MODAL}) as resp:
        assert resp.status == 204, await resp.text()
    return str(clicked["id"])


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(guilds=2, members=5)) as s:
        yield s


@pytest.fixture
async def http(sb: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sb.control_url) as session:
        yield session


@pytest.fixture
async def place(sb: Sandbox, http: aiohttp.ClientSession) -> Place:
    guild = next(iter(sb.world.guilds.values()))
    general = next(c for c in guild.channels.values() if c.name == "general")
    category = next(c for c in guild.channels.values() if c.type == 4)
    headers = {"Authorization": f"Bot {sb.token}"}
    app = sb.world.application_id
    async with http.put(f"/api/v10/applications/{app}/commands", json=COMMANDS, headers=headers):
        pass
    buttons = {
        "content": "pick",
        "components": [
            {
                "type": 1,
                "components": [
                    {"type": 2, "style": 1, "label": "Go", "custom_id": "go"},
                    {"type": 2, "style": 1, "label": "Off", "custom_id": "off", "disabled": True},
                ],
            },
            {
                "type": 1,
                "components": [
                    {
                        "type": 3,
                        "custom_id": "menu",
                        "options": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}],
                    }
                ],
            },
            {"type": 1, "components": [{"type": 5, "custom_id": "who"}]},
        ],
    }
    async with http.post(
        f"/api/v10/channels/{general.id}/messages", json=buttons, headers=headers
    ) as resp:
        assert resp.status == 200, await resp.text()
        message_id = (await resp.json())["id"]
    found = Place(
        guild_id=guild.id,
        channel_id=general.id,
        category_id=category.id,
        user_id=next(m for m in guild.members if m not in (sb.world.bot.id, guild.owner_id)),
        stranger_id=next(u for u in sb.world.users if u not in guild.members),
        role_id=next(r for r in guild.roles if r != guild.id),
        message_id=message_id,
        interaction_id="",
    )
    found.interaction_id = await open_modal(sb, http, found)
    return found


# -- wrong values, by the kind of field -----------------------------------------------------------

HUGE = 10**30
ANY_WRONG_TYPE: list[Any] = [[], [1], {}, {"id": "1"}, True]
# Well-formed snowflakes of nothing in the world.
NOBODY = ["1", "4242", str((1 << 64) - 1)]
NOT_SNOWFLAKES: list[Any] = [
    *ANY_WRONG_TYPE,
    "abc",
    "",
    " 1",
    "-5",
    "1.0",
    "1" * 30,
    -5,
    0,
    1.5,
    HUGE,
    1 << 64,
]


def wrong_snowflake() -> list[Any]:
    return NOT_SNOWFLAKES + NOBODY


def wrong_string(max_length: int | None = None) -> list[Any]:
    values: list[Any] = [*ANY_WRONG_TYPE, 5, -1, HUGE, 1.5]
    if max_length is not None:
        values.append("x" * (max_length + 1))
    return values


def wrong_int(low: int, high: int) -> list[Any]:
    return [*ANY_WRONG_TYPE, "5", 1.5, low - 1, high + 1, HUGE, -HUGE]


def wrong_number(low: float, high: float) -> list[Any]:
    return [*ANY_WRONG_TYPE, "1", low - 1, high + 1, HUGE, 1e308]


def wrong_bool() -> list[Any]:
    return [[], {}, "true", 1, 0, -1, HUGE]


WRONG_OPTIONS: list[Any] = [
    5,
    "word",
    True,
    [5],
    ["word"],
    [{}],
    [{"name": 5, "value": "x"}],
    [{"name": "word"}],  # no value
    [{"name": "word", "value": "a"}, {"name": "word", "value": "b"}],  # twice
    [{"name": "word", "value": "a", "type": "3"}],
    [{"name": "word", "value": "a", "type": 4}],  # not its declared type
    {},  # word is required
    {"nope": 1, "word": "a"},
    {"word": None},
    {"word": 5},
    {"word": ["a"]},
    {"word": "x" * 21},  # max_length 20
    {"word": "a", "count": "3"},
    {"word": "a", "count": 0},  # min_value 1
    {"word": "a", "count": 11},  # max_value 10
    {"word": "a", "count": 2.5},
    {"word": "a", "count": True},
    {"word": "a", "count": HUGE},
    {"word": "a", "ratio": "0.5"},
    {"word": "a", "ratio": 1e300},
    {"word": "a", "loud": "yes"},
    {"word": "a", "mood": "angry"},  # not one of the choices
    {"word": "a", "who": "abc"},
    {"word": "a", "who": "1"},  # nobody
    {"word": "a", "role": "1"},
    {"word": "a", "where": "1"},
    {"word": "a", "where": {"id": "1"}},
]


@dataclass
class Route:
    path: str
    valid: dict[str, Any]
    wrong: dict[str, list[Any]]  # field -> values that must each be a 400
    required: tuple[str, ...]


def routes(p: Place) -> list[Route]:
    ch, user, guild = str(p.channel_id), str(p.user_id), str(p.guild_id)
    ids = {"channel_id": [*wrong_snowflake(), str(p.category_id)]}
    return [
        Route(
            "/_sandbox/messages",
            {"channel_id": ch, "author_id": user, "content": "hi"},
            {
                **ids,
                "author_id": [*wrong_snowflake(), str(p.stranger_id)],
                "content": wrong_string(2000),
            },
            ("channel_id", "author_id"),
        ),
        Route(
            "/_sandbox/interactions",
            {"channel_id": ch, "user_id": user, "name": "echo", "options": {"word": "there"}},
            {
                **ids,
                "user_id": [*wrong_snowflake(), str(p.stranger_id)],
                "name": [*wrong_string(32), "nope", ""],
                "options": WRONG_OPTIONS,
            },
            ("channel_id", "user_id", "name"),
        ),
        Route(
            "/_sandbox/interactions",
            {"channel_id": ch, "user_id": user, "message_id": p.message_id, "custom_id": "go"},
            {
                **ids,
                "user_id": [*wrong_snowflake(), str(p.stranger_id)],
                "message_id": wrong_snowflake(),
                "custom_id": [*wrong_string(100), "nope", "off", ""],
                "name": ["echo"],  # a click is not a command too
                "options": [{"word": "a"}],
            },
            ("channel_id", "user_id", "message_id", "custom_id"),
        ),
        Route(
            "/_sandbox/interactions",
            {
                "channel_id": ch,
                "user_id": user,
                "message_id": p.message_id,
                "custom_id": "menu",
                "values": ["b"],
            },
            {
                **ids,
                "user_id": [*wrong_snowflake(), str(p.stranger_id)],
                "custom_id": [*wrong_string(100), "nope", "off", ""],
                "values": [*ANY_WRONG_TYPE, "a", 5, [], ["z"], ["a", "a"], ["a", "b"], [5]],
                "name": ["echo"],
            },
            ("channel_id", "user_id", "message_id", "custom_id", "values"),
        ),
        Route(
            "/_sandbox/interactions",
            {
                "channel_id": ch,
                "user_id": user,
                "message_id": p.message_id,
                "custom_id": "who",
                "values": [user],
            },
            {"values": [["1"], [str(p.stranger_id)], [p.role_id], ["abc"], [user, user]]},
            ("values",),
        ),
        Route(
            "/_sandbox/interactions",
            {"channel_id": ch, "user_id": user, "fields": {"amount": "50"}, "custom_id": "form"},
            {
                **ids,
                "user_id": [*wrong_snowflake(), str(p.stranger_id)],
                "fields": [
                    *ANY_WRONG_TYPE[:3],
                    5,
                    "50",
                    {"amount": 5},
                    {"amount": ""},
                    {"amount": "1234567"},
                    {"amount": "5", "nope": "1"},
                    {"amount": ["5"]},
                ],
                "custom_id": [*wrong_string(100), "other", ""],
                "message_id": [p.message_id],  # a submission is not a click too
                "values": [["a"]],
                "name": ["echo"],
            },
            ("channel_id", "user_id"),
        ),
        Route(
            "/_sandbox/redeliveries",
            {"id": p.interaction_id},
            {"id": wrong_snowflake()},
            ("id",),
        ),
        Route(
            "/_sandbox/faults",
            {
                "kind": "status",
                "route": "POST /channels/{channel_id}/messages",
                "count": 1,
                "status": 503,
                "global": False,
                "retry_after": 1.0,
            },
            {
                "kind": [*wrong_string(), "explode", ""],
                "route": [*wrong_string(200), "POST /nowhere", ""],
                "count": wrong_int(1, 1_000_000),
                "status": [*wrong_int(400, 599), 200],
                "global": wrong_bool(),
                "retry_after": wrong_number(0, 3600),
            },
            ("kind",),
        ),
        Route(
            "/_sandbox/faults",
            {"kind": "drop", "shard": 0},
            {"shard": wrong_int(0, 1 << 20)},
            ("kind",),
        ),
        Route(
            "/_sandbox/events",
            {"kind": "presence", "guild_id": guild, "user_id": user, "status": "idle"},
            {
                "kind": [*wrong_string(), "explode", ""],
                "guild_id": wrong_snowflake(),
                "user_id": [*wrong_snowflake(), str(p.stranger_id)],
                "status": [*wrong_string(), "busy"],
            },
            ("kind", "guild_id", "user_id"),
        ),
        Route(
            "/_sandbox/events",
            {
                "kind": "reaction",
                "guild_id": guild,
                "channel_id": ch,
                "message_id": p.message_id,
                "user_id": user,
                "emoji": "🎲",
            },
            {
                **ids,
                "message_id": wrong_snowflake(),
                "user_id": [*wrong_snowflake(), str(p.stranger_id)],
                "emoji": wrong_string(100),
            },
            ("guild_id", "channel_id", "message_id", "user_id"),
        ),
        Route(
            "/_sandbox/events",
            {"kind": "member_add", "guild_id": guild, "user_id": str(p.stranger_id)},
            {"user_id": [*wrong_snowflake(), user]},  # the member is one already
            ("guild_id", "user_id"),
        ),
    ]


BAD_JSON = [
    b"",
    b"{",
    b"not json",
    b"\xff\xfe{}",
    b'{"a": 1,}',
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
]
NOT_OBJECTS = [b"[]", b"[{}]", b'"text"', b"1", b"-1", b"null", b"true", b"1e999"]


class Checker:
    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.sent = 0

    async def bad(self, path: str, body: bytes, field: str | None, why: str) -> None:
        async with self.http.post(path, data=body) as resp:
            text = await resp.text()
            assert resp.status == 400, (path, why, body[:200], resp.status, text)
            assert resp.content_type == "application/json", text
        self.sent += 1
        message = json.loads(text)["message"]
        if field is not None:
            assert message.startswith(f"{field}"), (path, why, message)


async def test_every_bad_input_is_a_400_naming_the_field(
    sb: Sandbox, http: aiohttp.ClientSession, place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    check = Checker(http)
    posts = {r.path for r in routes(place)}
    for path in sorted(posts):
        for raw in BAD_JSON:
            await check.bad(path, raw, "body", "invalid JSON")
        for raw in NOT_OBJECTS:
            await check.bad(path, raw, "body", "not an object")
    for route in routes(place):
        for name in route.required:
            body = {k: v for k, v in route.valid.items() if k != name}
            await check.bad(route.path, json.dumps(body).encode(), name, f"{name} missing")
            body = {**route.valid, name: None}
            await check.bad(route.path, json.dumps(body).encode(), name, f"{name} null")
        for name, values in route.wrong.items():
            for value in values:
                body = json.dumps({**route.valid, name: value}).encode()
                # A wrong option is named by its path (options.word, options[0], ...).
                await check.bad(route.path, body, name, f"{name}={value!r}"[:80])
    assert check.sent > 500
    await still_serves(sb, http, place)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_outbox_query_parameters(
    sb: Sandbox, http: aiohttp.ClientSession, place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    wrong = {
        "after": ["abc", "-1", "1.5", "1e3", " 1", "9" * 30, "0x10"],
        "wait": ["-5", "abc", "nan", "NaN", "inf", "-inf", "61", "1e309", "5s"],
        "channel_id": ["abc", "-1", "0", "1", "1" * 30, "1.0"],
    }
    for name, values in wrong.items():
        for value in values:
            async with http.get("/_sandbox/outbox", params={name: value}) as resp:
                body = await resp.json()
                assert resp.status == 400, (name, value, body)
                assert body["message"].startswith(f"{name}: "), body
    params = {"channel_id": str(place.channel_id), "after": "0", "wait": "0.1"}
    async with http.get("/_sandbox/outbox", params=params) as resp:
        # The message with buttons and menus, and the modal it opened.
        assert resp.status == 200
        assert [e["kind"] for e in await resp.json()] == ["message", "modal"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_random_junk_is_never_a_500(
    sb: Sandbox, http: aiohttp.ClientSession, place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    """Seeded random JSON in every field of every route: each answer is a 200 (the junk
    happened to be valid) or a 400 naming a field, never anything else."""
    caplog.set_level(logging.ERROR)
    rng = random.Random(23)
    # Junk can turn one kind of request into another of the same route (a submission without
    # its fields is a click): the field named is then one of that route's other kinds.
    fields: dict[str, set[str]] = {}
    for route in routes(place):
        fields.setdefault(route.path, {"body"}).update(route.valid)
    for route in routes(place):
        names = [*route.valid, "extra"]
        for _ in range(100):
            body = dict(route.valid)
            for name in rng.sample(names, rng.randint(1, 2)):
                body[name] = junk(rng, 3)
            async with http.post(route.path, json=body) as resp:
                answer = await resp.json()
                assert resp.status in (200, 400), (route.path, body, answer)
                if resp.status == 400:
                    field = answer["message"].split(":")[0]
                    assert field.split(".")[0].split("[")[0] in fields[route.path], answer
    await still_serves(sb, http, place)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def junk(rng: random.Random, depth: int) -> Any:
    choice = rng.randrange(10 if depth > 0 else 8)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64, 10**40, rng.randint(-100, 100)])
    if choice == 3:
        return rng.choice([0.0, -0.5, 1e-300, 1.5e300, rng.uniform(-10, 10)])
    if choice == 4:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 25)))
    if choice in (5, 6, 7):
        alphabet = "abc XYZ_-:/{}\\\"'é🎲\u0000\n"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    if choice == 8:
        return [junk(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    keys = ["name", "value", "options", "type", "word", "count", "id", ""]
    return {rng.choice(keys): junk(rng, depth - 1) for _ in range(rng.randint(0, 3))}


async def test_wrong_methods_and_query_junk_on_the_get_routes(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    for path in ("/_sandbox/world", "/_sandbox/stats"):
        async with http.get(path, params={"x": "1", "after": "abc"}) as resp:
            assert resp.status == 200
        async with http.post(path, data=b"{") as resp:
            assert resp.status == 405
    for path in (
        "/_sandbox/messages",
        "/_sandbox/faults",
        "/_sandbox/events",
        "/_sandbox/redeliveries",
    ):
        async with http.get(path) as resp:
            assert resp.status == 405
    async with http.post("/_sandbox/modals", data=b"{}") as resp:
        assert resp.status == 405
    for params in ({}, {"user_id": "abc"}, {"user_id": "1"}):
        async with http.get("/_sandbox/modals", params=params) as resp:
            assert resp.status == 400 and (await resp.json())["message"].startswith("user_id: ")


async def still_serves(sb: Sandbox, http: aiohttp.ClientSession, place: Place) -> None:
    """The sandbox answers, and every route still does its work with a valid body."""
    async with http.get("/_sandbox/world") as resp:
        assert resp.status == 200 and len((await resp.json())["guilds"]) == 2
    members = sb.world.guilds[place.guild_id].members
    for route in routes(place):
        body = route.valid
        if body.get("kind") == "member_add":  # someone who is not a member (yet)
            body = {**body, "user_id": str(next(u for u in sb.world.users if u not in members))}
        if "fields" in body:  # a submission closes the modal: open one to submit
            await open_modal(sb, http, place)
        async with http.post(route.path, json=body) as resp:
            assert resp.status == 200, (route.path, await resp.text())
    async with http.get("/_sandbox/stats") as resp:
        assert resp.status == 200


# -- options: either form -----------------------------------------------------------------------


async def test_options_as_an_object_over_http(
    sb: Sandbox, http: aiohttp.ClientSession, place: Place
) -> None:
    body = {
        "channel_id": str(place.channel_id),
        "user_id": str(place.user_id),
        "name": "echo",
        "options": {"word": "there"},
    }
    async with http.post("/_sandbox/interactions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        iid = (await resp.json())["id"]
    (state,) = [s for s in sb.rest.interactions.values() if s["id"] == iid]
    options = state["payload"]["data"]["options"]
    assert options == [{"name": "word", "type": 3, "value": "there"}]


async def test_options_in_both_forms_give_discords_list(sb: Sandbox, place: Place) -> None:
    ch, user = place.channel_id, place.user_id
    listed = await sb.send_interaction(
        ch,
        user,
        "remind",
        [{"name": "create", "type": 1, "options": [{"name": "when", "value": "in 2s"}]}],
    )
    as_object = await sb.send_interaction(ch, user, "remind", {"create": {"when": "in 2s"}})
    expected = [
        {"name": "create", "type": 1, "options": [{"name": "when", "type": 3, "value": "in 2s"}]}
    ]
    assert listed["data"]["options"] == as_object["data"]["options"] == expected
    bare = await sb.send_interaction(ch, user, "remind", {"list": None})
    assert bare["data"]["options"] == [{"name": "list", "type": 1, "options": []}]
    for wrong in ({}, {"create": {"when": "x"}, "list": {}}, {"create": {}}):
        with pytest.raises(ValueError, match=r"^options"):  # one subcommand; `when` required
            await sb.send_interaction(ch, user, "remind", wrong)


async def test_id_options_come_resolved(sb: Sandbox, place: Place) -> None:
    payload = await sb.send_interaction(
        place.channel_id,
        place.user_id,
        "echo",
        {
            "word": "hi",
            "who": str(place.user_id),
            "role": place.role_id,
            "where": str(place.channel_id),
            "count": 3,
            "ratio": 0.5,
            "loud": True,
            "mood": "sad",
        },
    )
    data = payload["data"]
    values = {o["name"]: o["value"] for o in data["options"]}
    assert values["who"] == str(place.user_id) and values["role"] == str(place.role_id)
    assert values["count"] == 3 and values["loud"] is True and values["mood"] == "sad"
    resolved = data["resolved"]
    assert resolved["users"][str(place.user_id)]["id"] == str(place.user_id)
    assert "user" not in resolved["members"][str(place.user_id)]
    assert resolved["members"][str(place.user_id)]["permissions"]
    assert resolved["roles"][str(place.role_id)]["id"] == str(place.role_id)
    channel = resolved["channels"][str(place.channel_id)]
    assert channel["name"] == "general" and channel["type"] == 0 and channel["permissions"]
