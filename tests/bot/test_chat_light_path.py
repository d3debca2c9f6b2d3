"""The light path for chat (bot/chat_light_path.py): which gateway payloads become a `Chat`,
which take discord.py's full path, and that nothing is dispatched twice."""

from __future__ import annotations

import logging
from typing import Any

import discord
import pytest

from bot.chat_light_path import Chat
from bot.dpy.chat_state import ChatState
from bot.guildhouse import intents
from bot.metrics import GATEWAY_DROPPED

GUILD, CHANNEL, CATEGORY, BOT, USER = 111, 222, 333, 999, 4242 << 22


def _message(content: str = "hello there", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str((1 << 42) + 7),
        "channel_id": str(CHANNEL),
        "guild_id": str(GUILD),
        "type": 0,
        "content": content,
        "author": {
            "id": str(USER),
            "username": "ann",
            "global_name": "Ann",
            "avatar": None,
            "discriminator": "0",
        },
        "member": {"roles": ["5", "6"], "avatar": None},
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "timestamp": "2026-12-01T10:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "pinned": False,
    }
    data.update(changes)
    return data


@pytest.fixture
async def state() -> ChatState:
    client = discord.AutoShardedClient(intents=intents(), shard_count=1)
    st = ChatState(
        dispatch=client.dispatch,
        handlers=client._handlers,
        hooks=client._hooks,
        http=client.http,
        intents=intents(),
        shard_count=1,
    )
    st.user = discord.ClientUser(
        state=st, data={"id": str(BOT), "username": "gh", "discriminator": "0", "avatar": None}
    )
    guild = discord.Guild(
        state=st,
        data={  # type: ignore[typeddict-item]
            "id": str(GUILD),
            "name": "Table",
            "roles": [],
            "channels": [
                {"id": str(CATEGORY), "type": 4, "name": "games", "position": 0},
                {
                    "id": str(CHANNEL),
                    "type": 0,
                    "name": "general",
                    "position": 1,
                    "parent_id": str(CATEGORY),
                },
            ],
        },
    )
    st._add_guild(guild)
    st.chat_prefix = lambda gid: "?" if gid == GUILD else None
    return st


def test_plain_chat_becomes_a_chat_record(state: ChatState) -> None:
    chat = state.as_chat(_message())
    assert isinstance(chat, Chat)
    assert (chat.guild_id, chat.channel_id, chat.parent_id, chat.author_id) == (
        GUILD,
        CHANNEL,
        CATEGORY,
        USER,
    )
    assert chat.role_ids == (GUILD, 5, 6) and chat.name == "Ann"
    assert chat.avatar_url.startswith("https://cdn.discordapp.com/embed/avatars/")
    assert chat.created_at == discord.utils.snowflake_time(chat.message_id)
    channel = state._get_guild(GUILD).get_channel(CHANNEL)  # type: ignore[union-attr]
    assert channel.last_message_id == chat.message_id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "payload",
    [
        _message("?roll 2d6"),  # the guild's prefix: maybe a command
        _message(f"<@{BOT}> help"),  # a mention of the bot
        _message(f"<@!{BOT}> help"),
        _message(guild_id=None),  # a DM
        _message(author={"id": "5", "username": "b", "bot": True}),
        _message(webhook_id="77"),
        _message(type=7),  # a member joined (a system message)
        _message(channel_id="123456"),  # a thread, or a channel not cached
        _message(guild_id="555"),  # a guild whose prefix isn't cached here
    ],
)
def test_what_takes_the_full_path(state: ChatState, payload: dict[str, Any]) -> None:
    assert state.as_chat(payload) is None


def test_chat_goes_to_the_sinks_and_not_to_on_message(state: ChatState) -> None:
    seen: list[Chat] = []
    dispatched: list[str] = []
    state.chat_sinks.append(seen.append)
    state.dispatch = lambda event, *args: dispatched.append(event)  # type: ignore[method-assign]
    state.parse_message_create(_message())
    assert len(seen) == 1 and dispatched == []
    state.parse_message_create(_message("?ping"))
    assert len(seen) == 1 and dispatched == ["message"]


def test_a_failing_sink_does_not_stop_the_others(state: ChatState) -> None:
    seen: list[Chat] = []

    def broken(_: Chat) -> None:
        raise RuntimeError("bug")

    state.chat_sinks += [broken, seen.append]
    state.parse_message_create(_message())
    assert len(seen) == 1


def test_avatars(state: ChatState) -> None:
    own = state.as_chat(
        _message(author={"id": str(USER), "username": "a", "avatar": "abc", "discriminator": "0"})
    )
    assert own is not None and own.avatar_url.endswith(f"/avatars/{USER}/abc.png?size=1024")
    server = state.as_chat(_message(member={"roles": [], "avatar": "def"}))
    assert server is not None and f"/guilds/{GUILD}/users/{USER}/avatars/def" in server.avatar_url


def test_a_changed_avatar_is_the_new_url(state: ChatState) -> None:
    """The URL is memoised by everything it depends on: a member who changes their avatar (or
    drops it) gets the new one at once."""

    def url(avatar: str | None, discriminator: str = "0") -> str:
        author = {"id": str(USER), "username": "a", "avatar": avatar}
        chat = state.as_chat(_message(author={**author, "discriminator": discriminator}))
        assert chat is not None
        return chat.avatar_url

    assert url("abc").endswith("/abc.png?size=1024")
    assert url("a_anim").endswith("/a_anim.gif?size=1024")  # animated
    assert url("abc").endswith("/abc.png?size=1024")
    assert url(None).endswith(f"/embed/avatars/{(USER >> 22) % 6}.png")
    assert url(None, "0007").endswith("/embed/avatars/2.png")  # an old username: 7 % 5
    # Discord sends four digits; anything else is read as a new username's, never raised on.
    for odd in ("abc", "", "9" * 5000, "\u0663"):
        assert url(None, odd).endswith(f"/embed/avatars/{(USER >> 22) % 6}.png"), odd


def test_an_event_its_parser_cant_read_is_dropped_and_logged(
    state: ChatState, caplog: pytest.LogCaptureFixture
) -> None:
    """A parser's exception would end discord.py's client (every shard of the worker): the
    guard drops the event, logs it (the first of a type with its traceback) and counts it."""
    caplog.set_level(logging.ERROR, logger="bot.dpy.parser_guard")
    before = _dropped("MESSAGE_CREATE")
    seen: list[Chat] = []
    state.chat_sinks.append(seen.append)
    for payload in (
        {"id": "not a snowflake", "channel_id": "nor this", "content": "?ping"},  # full path
        _message(id="x"),  # the light path
        _message(member={"roles": ["five"]}),
    ):
        state.parsers["MESSAGE_CREATE"](payload)
    state.parsers["MESSAGE_REACTION_ADD"]({"guild_id": str(GUILD)})
    assert _dropped("MESSAGE_CREATE") == before + 3
    lines = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert len(lines) == 4 and all("dropped" in text for text, _ in lines)
    assert [traced for _, traced in lines] == [True, False, False, True]  # first of each type
    assert f"MESSAGE_REACTION_ADD in guild {GUILD} dropped" in lines[3][0]
    # The state reads on: the next good message is chat as ever.
    state.parsers["MESSAGE_CREATE"](_message())
    assert len(seen) == 1 and seen[0].content == "hello there"


def _dropped(event: str) -> float:
    return float(GATEWAY_DROPPED.labels("", event)._value.get())  # type: ignore[attr-defined]


def test_chat_of_the_full_path_is_the_same_record(state: ChatState) -> None:
    """A guild message that took discord.py's full path and turned out not to be addressed to
    the bot reaches the sinks as the record the light path would have made of it."""
    guild = state._get_guild(GUILD)
    assert guild is not None
    for position, role_id in enumerate((GUILD, 5, 6)):
        data = {"id": str(role_id), "name": f"r{role_id}", "position": position, "permissions": "0"}
        guild._add_role(discord.Role(guild=guild, state=state, data=data))  # type: ignore[arg-type]
    seen: list[Chat] = []
    state.chat_sinks.append(seen.append)

    def full_path(**changes: Any) -> None:
        # discord.py makes the author a Member from the fields Discord sends (flags among them).
        member = {"roles": ["5", "6"], "avatar": None, "flags": 0, "joined_at": None}
        data = _message(**{"member": member, **changes})
        if data["member"] is None:
            del data["member"]
        channel = guild.get_channel(CHANNEL)
        message = discord.Message(state=state, channel=channel, data=data)  # type: ignore[arg-type]
        state.deliver_message(message)

    full_path()
    assert seen == [state.as_chat(_message())]
    bot = {"id": "5", "username": "b", "bot": True, "avatar": None, "discriminator": "0"}
    full_path(author=bot)
    full_path(webhook_id="77", member=None)  # a webhook's message has no member
    assert len(seen) == 1
