"""The console's pure parts: Discord markup as a person reads it, what the bot sends (embeds,
numbered buttons and menus, files), slash commands typed with options by name, who you speak
as, and refusals of what you say (a timeout, slowmode)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cluster.console import (
    Directory,
    InputError,
    Screen,
    Style,
    asks_the_bot,
    describe_commands,
    format_timestamp,
    parse_slash,
    pick_member,
    relative_time,
    render_markup,
    rest_key,
    standing_of,
)
from cluster.console.files import human_size, png_size, refusal
from cluster.console.files import target as save_target
from sandbox.world import World

ANN, BOB, BOT = 110000000000000001, 110000000000000002, 110000000000000009
GM_ROLE, DICE = 220000000000000001, 330000000000000001
NOW = datetime(2026, 12, 3, 18, 0, tzinfo=UTC).timestamp()

NAMES = Directory(
    users={ANN: "Ann", BOB: "Bob the Builder", BOT: "Guildhouse"},
    roles={GM_ROLE: "Game Masters"},
    channels={DICE: "dice"},
)
PLAIN, COLOUR = Style(False), Style(True)


def plain(text: str) -> str:
    return render_markup(text, NAMES, PLAIN, now=NOW, tz=UTC)


def test_mentions_channels_and_roles_by_name() -> None:
    assert plain(f"<@{ANN}> and <@!{BOB}>") == "@Ann and @Bob the Builder"
    assert plain(f"GM: <@&{GM_ROLE}> in <#{DICE}>") == "GM: @Game Masters in #dice"
    # Someone the console doesn't know is still clearly a mention.
    assert plain("<@120000000000000077>") == "@user 120000000000000077"
    assert plain("<:dice:123456789012345678> <a:spin:123456789012345678>") == ":dice: :spin:"
    assert plain("run </roll:123456789012345678>") == "run /roll"


def test_timestamps_in_every_style() -> None:
    stamp = int(datetime(2026, 12, 5, 19, 30, 15, tzinfo=UTC).timestamp())
    assert plain(f"<t:{stamp}>") == "5 December 2026 19:30"
    assert plain(f"<t:{stamp}:f>") == "5 December 2026 19:30"
    assert plain(f"<t:{stamp}:F>") == "Saturday, 5 December 2026 19:30"
    assert plain(f"<t:{stamp}:t> <t:{stamp}:T>") == "19:30 19:30:15"
    assert plain(f"<t:{stamp}:d> <t:{stamp}:D>") == "05/12/2026 5 December 2026"
    assert plain(f"<t:{stamp}:R>") == "in 2 days"
    # The console's own time zone, as Discord's client shows times.
    berlin = timezone(timedelta(hours=1))
    assert format_timestamp(stamp, "t", NOW, berlin) == "20:30"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (10, "in a few seconds"),
        (-10, "a few seconds ago"),
        (60, "in a minute"),
        (-60 * 5, "5 minutes ago"),
        (3600, "in an hour"),
        (2 * 3600, "in 2 hours"),
        (-30 * 3600, "a day ago"),
        (3 * 86400, "in 3 days"),
        (35 * 86400, "in a month"),
        (-100 * 86400, "3 months ago"),
        (400 * 86400, "in a year"),
        (-3 * 365 * 86400, "3 years ago"),
    ],
)
def test_relative_times(seconds: float, text: str) -> None:
    assert relative_time(seconds) == text


def test_markdown_reads_as_text_without_styles() -> None:
    assert plain("**Ann** rolled __5__ and *3*") == "Ann rolled 5 and 3"
    assert plain("`2d6`: **7** [3, ~~1~~→4]") == "`2d6`: 7 [3, ~~1~~→4]"  # struck stays struck
    assert plain("\\*not bold\\* a\\_b snake_case_name") == "*not bold* a_b snake_case_name"
    assert plain("# Title\n-# small print\n> quoted") == "Title\nsmall print\n│ quoted"
    assert plain("see [the docs](https://example.com/x)") == "see the docs <https://example.com/x>"
    assert plain("```py\nprint(1)\n```") == "`print(1)`"
    assert plain("`<@1>` **inside `code`**") == "`<@1>` inside `code`"
    assert plain("||spoiler||") == "||spoiler||"


def test_markdown_as_styles_on_a_terminal() -> None:
    out = render_markup(f"**bold** __u__ *i* ~~s~~ <@{ANN}>", NAMES, COLOUR, now=NOW, tz=UTC)
    assert out == (
        "\x1b[1mbold\x1b[22m \x1b[4mu\x1b[24m \x1b[3mi\x1b[23m \x1b[9ms\x1b[29m "
        "\x1b[94m@Ann\x1b[39m"
    )
    assert "\x1b[" not in plain(f"**bold** <@{ANN}>")


def roll_message(message_id: str, *, disabled: bool = False) -> dict[str, Any]:
    return {
        "kind": "message",
        "message_id": message_id,
        "content": f"**<@{ANN}>** rolled\n`2d6`: **7** [3, 4]",
        "components": [
            {
                "type": 1,
                "components": [
                    {
                        "type": 2,
                        "style": 2,
                        "label": "Reroll",
                        "emoji": {"name": "🎲"},
                        "custom_id": f"reroll:{message_id}",
                        "disabled": disabled,
                    },
                    {"type": 2, "style": 5, "label": "Rules", "url": "https://example.com"},
                ],
            }
        ],
    }


def test_a_message_with_buttons() -> None:
    screen = Screen(NAMES, PLAIN, bot_name="Guildhouse", tz=UTC)
    assert screen.entry(roll_message("500")) == [
        "Guildhouse › @Ann rolled",
        "             `2d6`: 7 [3, 4]",
        "             [1 🎲 Reroll]  [Rules → https://example.com]",
    ]
    screen.entry(roll_message("501"))
    assert [(c.number, c.message_id) for c in screen.controls.values()] == [(1, "500"), (2, "501")]
    # An edit keeps the button's number; a disabled button says so.
    edited = screen.entry({**roll_message("500", disabled=True), "kind": "edit"})
    assert edited[0].startswith("Guildhouse (edited) › ")
    assert edited[-1].strip().startswith("[1 🎲 Reroll] (disabled)")
    assert screen.controls[1].disabled and screen.controls[1].custom_id == "reroll:500"


def test_embeds_ephemeral_answers_and_menus() -> None:
    screen = Screen(NAMES, PLAIN, bot_name="Guildhouse", tz=UTC)
    embed = {
        "title": "Top of <#330000000000000001>",
        "description": f"1. <@{ANN}> — level 3\n2. <@{BOB}>",
        "fields": [{"name": "Period", "value": "all time"}],
        "footer": {"text": "Page 1 of 1"},
        "color": 0x5865F2,
    }
    lines = screen.entry({"kind": "interaction_response", "ephemeral": True, "embeds": [embed]})
    assert lines == [
        "Guildhouse (only you can see this) › │ Top of #dice",
        "                                     │ 1. @Ann — level 3",
        "                                     │ 2. @Bob the Builder",
        "                                     │ Period: all time",
        "                                     │ Page 1 of 1",
    ]
    menu = {
        "type": 1,
        "components": [
            {
                "type": 3,
                "custom_id": "system",
                "placeholder": "Game system",
                "options": [
                    {"label": "Shadowrun 3e", "value": "sr3"},
                    {"label": "RED", "value": "cpr"},
                ],
            }
        ],
    }
    (line,) = screen.components("600", [menu])
    assert line == "[1 ▾ Game system: choose one of Shadowrun 3e (sr3), RED (cpr)]"
    assert screen.controls[1].kind == "menu"
    form = screen.entry(
        {"kind": "modal", "title": "New macro", "inputs": [{"custom_id": "n", "label": "Name"}]}
    )
    assert form[0] == "Guildhouse › opens a form for you: New macro"
    assert form[1] == "    1. Name"


ROLL = {
    "name": "roll",
    "type": 1,
    "description": "Roll dice",
    "options": [{"type": 3, "name": "dice", "description": "Dice", "required": True}],
}
REMIND = {
    "name": "remind",
    "type": 1,
    "options": [
        {
            "type": 1,
            "name": "create",
            "options": [
                {"type": 3, "name": "when", "required": True},
                {"type": 3, "name": "message", "required": True},
                {"type": 5, "name": "dm"},
            ],
        },
        {"type": 1, "name": "list"},
        {"type": 1, "name": "cancel", "options": [{"type": 4, "name": "id", "required": True}]},
    ],
}
TOP = {
    "name": "top",
    "type": 1,
    "options": [
        {
            "type": 3,
            "name": "period",
            "choices": [
                {"name": "All time", "value": "alltime"},
                {"name": "Week", "value": "week"},
            ],
        },
    ],
}
GM = {"name": "gm", "type": 1, "options": [{"type": 6, "name": "member", "required": True}]}
COMMANDS = [ROLL, REMIND, TOP, GM]


def test_slash_commands_with_options_by_name() -> None:
    assert parse_slash("/roll dice:2d6", COMMANDS, NAMES) == ("roll", {"dice": "2d6"})
    assert parse_slash("/roll dice: 6! tn4 # dodge", COMMANDS, NAMES) == (
        "roll",
        {"dice": "6! tn4 # dodge"},
    )
    # The one option a command has needs no name.
    assert parse_slash("/Roll 4d6kh3", COMMANDS, NAMES) == ("roll", {"dice": "4d6kh3"})
    assert parse_slash(
        "/remind create when:in 2h message:Check the oven: it's hot dm:yes", COMMANDS, NAMES
    ) == (
        "remind",
        {"create": {"when": "in 2h", "message": "Check the oven: it's hot", "dm": True}},
    )
    assert parse_slash("/remind cancel id:12", COMMANDS, NAMES) == (
        "remind",
        {"cancel": {"id": 12}},
    )
    assert parse_slash("/remind list", COMMANDS, NAMES) == ("remind", {"list": {}})
    assert parse_slash("/top period:week", COMMANDS, NAMES) == ("top", {"period": "week"})
    assert parse_slash("/top period:all time", COMMANDS, NAMES) == ("top", {"period": "alltime"})
    assert parse_slash("/gm member:@Bob the Builder", COMMANDS, NAMES) == (
        "gm",
        {"member": str(BOB)},
    )
    assert parse_slash(f"/gm member:<@{ANN}>", COMMANDS, NAMES) == ("gm", {"member": str(ANN)})


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("/rol dice:2d6", "no slash command /rol (it has: /gm, /remind, /roll, /top)"),
        ("/roll die:3", "/roll has no option die: (it has dice:)"),
        ("/roll", "/roll needs dice: (/roll dice:...)"),
        ("/remind when:in 2h", "/remind needs one of: create | list | cancel"),
        ("/remind create message:hi", "/remind create needs when:"),
        ("/remind cancel id:seven", "id: must be a whole number, not 'seven'"),
        ("/remind create when:now message:x dm:maybe", "dm: must be true or false"),
        ("/top period:fortnight", "period: is one of All time, Week"),
        ("/gm member:@Nobody", "no member called '@Nobody'"),
        ("/roll dice:1 dice:2", "dice: is given twice"),
        ("/", "a slash command has a name"),
    ],
)
def test_slash_command_mistakes_are_explained(line: str, words: str) -> None:
    with pytest.raises(InputError) as info:
        parse_slash(line, COMMANDS, NAMES)
    assert words in str(info.value)


def test_commands_are_listed_with_their_options() -> None:
    lines = describe_commands(COMMANDS)
    assert "  /roll dice:…  — Roll dice" in lines
    assert "  /remind create when:… message:… [dm:…]" in lines
    assert "  /remind cancel id:…" in lines


def test_who_you_speak_as() -> None:
    """In the sandbox's world: the first member owns each server, the second moderates."""
    world = World(guilds=3, members=6, seed=3).summary("http://sandbox")
    guild = world["guilds"][0]
    owner, moderator = int(guild["member_ids"][0]), int(guild["member_ids"][1])
    assert standing_of(guild, owner) == "owner"
    assert standing_of(guild, moderator) == "moderator"
    member, note = pick_member(guild, "member")
    assert standing_of(guild, member) == "member" and not note
    assert pick_member(guild, "moderator") == (moderator, "")
    assert pick_member(guild, "owner") == (owner, "")
    # Nobody but the owner has admin rights there: the owner (an admin too) stands in.
    assert pick_member(guild, "admin") == (
        owner,
        "for an admin: no other member here has admin rights",
    )
    # A member with Manage Server through a role is an admin.
    guild["roles"].append({"id": "990000000000000001", "name": "Staff", "permissions": str(1 << 5)})
    guild["members"][2]["roles"].append("990000000000000001")
    admin = int(guild["members"][2]["id"])
    assert standing_of(guild, admin) == "admin"
    assert pick_member(guild, "admin") == (admin, "")


def test_which_lines_wait_for_an_answer() -> None:
    assert asks_the_bot("!ping", BOT)
    assert asks_the_bot("?top week", BOT)
    assert asks_the_bot(f"<@{BOT}> roll 2d6", BOT)
    assert not asks_the_bot("hello everyone", BOT)
    assert not asks_the_bot("! not a command", BOT)
    assert not asks_the_bot("...", BOT)


def test_rate_limit_keys_are_the_limiters() -> None:
    """The console reads the bot's REST limiter state from Redis by the limiter's own keys."""
    from ipc.client import Keys, create_redis
    from ipc.ratelimit import GlobalLimiter

    limiter = GlobalLimiter(create_redis("redis://127.0.0.1:1"), Keys("gh:"))  # never called
    assert rest_key("gh:", "global", "pause") == limiter.keys[2]
    assert rest_key("gh:", "routes") == limiter.keys[3]
    assert rest_key("gh:", "bucket", "") == limiter.bucket_prefix


def png_head(width: int, height: int) -> bytes:
    """A PNG's first 24 bytes: the signature, then the IHDR chunk's length, type and size."""
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, height)


def test_png_dimensions_from_the_header() -> None:
    assert png_size(png_head(800, 400)) == (800, 400)
    assert png_size(png_head(800, 400) + b"more of the file") == (800, 400)
    assert png_size(png_head(800, 400)[:20]) is None  # cut short
    assert png_size(b"GIF89a" + bytes(18)) is None  # not a PNG
    assert png_size(png_head(0, 400)) is None  # no such image


def test_files_are_shown_numbered_with_their_size() -> None:
    screen = Screen(NAMES, PLAIN, bot_name="Guildhouse", tz=UTC)
    chart = {
        "id": "900",
        "filename": "chart.png",
        "size": 12_640,
        "content_type": "image/png",
        "width": 800,
        "height": 400,
    }
    notes = {"id": "901", "filename": "notes.txt", "size": 1, "description": "session notes"}
    lines = screen.entry({"kind": "message", "content": "Here:", "attachments": [chart, notes]})
    assert lines == [
        "Guildhouse › Here:",
        "             📎 [1] chart.png (12.34 KB, 800×400)",
        "             📎 [2] notes.txt (1 byte): session notes",
    ]
    # An edit that keeps a file keeps its number; a new file gets the next one.
    big = {"id": "902", "filename": "log.txt", "size": 3 * 1024 * 1024 + 512 * 1024}
    edited = screen.entry({"kind": "edit", "attachments": [notes, big]})
    assert edited[0].endswith("📎 [2] notes.txt (1 byte): session notes")
    assert edited[1].strip() == "📎 [3] log.txt (3.50 MB)"
    assert {n: f["filename"] for n, f in screen.files.items()} == {
        1: "chart.png",
        2: "notes.txt",
        3: "log.txt",
    }
    assert human_size(1023) == "1023 bytes" and human_size(1024) == "1.00 KB"
    # An embed's image that is one of the files is named as the file.
    assert screen.embed({"image": {"url": "attachment://chart.png"}}) == ["│ [image: 📎 chart.png]"]


def test_where_a_file_is_saved(tmp_path: Path) -> None:
    assert save_target("", "chart.png", tmp_path) == tmp_path / "chart.png"
    assert save_target("out.png", "chart.png", tmp_path) == tmp_path / "out.png"
    (tmp_path / "charts").mkdir()
    assert save_target("charts", "chart.png", tmp_path) == tmp_path / "charts" / "chart.png"
    # The bot names the file, never where it goes.
    assert save_target("", "../../.bashrc", tmp_path) == tmp_path / ".bashrc"
    assert save_target("", "..", tmp_path) == tmp_path / "file"


def test_a_timeout_and_slowmode_are_said_in_one_line() -> None:
    slow = {"message": "... slowmode rate limit (retry in 4.2 s).", "code": 20016}
    assert refusal(429, slow, channel="general", timed_out_until=None) == (
        "slowmode in #general: your message was not sent; you may post again in 4.2 s"
    )
    assert refusal(429, {"code": 20016, "retry_after": 9}, channel="g", timed_out_until=None) == (
        "slowmode in #g: your message was not sent; you may post again in 9.0 s"
    )
    until = datetime(2026, 12, 3, 18, 5, tzinfo=UTC).timestamp()
    denied = {"message": "Missing Permissions", "code": 50013}
    assert refusal(403, denied, channel="general", timed_out_until=until, tz=UTC, now=NOW) == (
        "you are timed out in this server until 18:05 (in 5 minutes): not sent"
    )
    assert refusal(403, denied, channel="general", timed_out_until=None) == (
        "you may not send messages in #general: not sent (403 Missing Permissions)"
    )
    # Other refusals keep the sandbox's own message (the console prints it as it is).
    assert (
        refusal(
            400, {"message": "content: too long", "code": 50035}, channel="g", timed_out_until=None
        )
        is None
    )
    assert (
        refusal(
            429,
            {"message": "You are being rate limited.", "code": 0},
            channel="g",
            timed_out_until=None,
        )
        is None
    )
