"""`guildhouse chat` against a real `guildhouse run` (its own sandbox, one worker): what a
newcomer types in their first hour, and what they read back.

The console runs as a subprocess exactly as a person runs it, piped or typed line by line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from launcher_proc import Launcher, launcher_env
from waits import wait_until

from cluster.console import pick_member
from cluster.console.files import png_size

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BIN = Path(sys.executable).parent  # where `guildhouse` is installed
# What a person reads has no raw markup left in it.
RAW = re.compile(r"<@!?&?\d+>|<#\d+>|<t:\d+|\*\*")


@dataclass
class Running:
    launcher: Launcher
    env: dict[str, str]
    port: int
    sandbox: dict[str, Any]


@pytest.fixture(scope="module")
def bot(bot_db: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data = tmp_path_factory.mktemp("chat")
    env = launcher_env(
        DATABASE_URL=bot_db,
        REDIS_URL=redis_url,
        REDIS_PREFIX=f"chat:{uuid.uuid4().hex[:8]}:",
        DATA_DIR=str(data),
    )
    env["LOG_LEVEL"] = "WARNING"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    launcher = Launcher(env, data)
    try:
        port = launcher.wait_ready()
        sandbox = orjson.loads((data / "sandbox.json").read_bytes())
        yield Running(launcher, env, port, sandbox)
        os.killpg(launcher.proc.pid, signal.SIGINT)
        assert launcher.proc.wait(60) == 0
    finally:
        launcher.kill()


def chat_in_shell(bot: Running, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command], env=bot.env, capture_output=True, text=True, timeout=120
    )


def test_piped_commands_print_their_answers_and_exit(bot: Running) -> None:
    done = chat_in_shell(bot, "printf '!ping\\n/roll dice:2d6\\n!top\\n' | guildhouse chat")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # Who you are, on stderr (the transcript is stdout): a plain member by default.
    assert "a member (no moderator or admin rights)" in done.stderr
    you = re.search(r"You are (.+?) \(\d+\)", done.stderr)
    assert you, done.stderr
    name = you.group(1)
    lines = out.splitlines()
    # Each line you typed, with your name, then the bot's answer to it, in that order.
    order = [
        f"{name} › !ping",
        "Guildhouse (edited) › Pong! Gateway",
        f"{name} › /roll dice:2d6",
        f"Guildhouse › {name} rolled",
        f"{name} › !top",
        "Guildhouse › │ Top of ",
    ]
    at = [next((i for i, ln in enumerate(lines) if ln.startswith(o)), -1) for o in order]
    assert -1 not in at and at == sorted(at), out
    # The roll reads as a person would read it: the total, then the dice.
    rolled = re.fullmatch(r"`2d6`: (\d+) \[(\d), (\d)\]", lines[at[3] + 1].strip())
    assert rolled, out
    total, first, second = map(int, rolled.groups())
    assert total == first + second
    assert "Nobody has XP yet." in out  # a new sandbox: nobody has chatted
    assert not RAW.search(out), out


def world(bot: Running) -> dict[str, Any]:
    with urllib.request.urlopen(f"{bot.sandbox['control_url']}/_sandbox/world", timeout=10) as r:
        data: dict[str, Any] = orjson.loads(r.read())
    return data


def test_only_what_happens_from_now_on_unless_history_is_asked(bot: Running) -> None:
    guild = world(bot)["guilds"][2]
    channel = next(c["id"] for c in guild["channels"] if c["name"] == "general")
    said = chat_in_shell(bot, f"printf '!about\\n' | guildhouse chat --channel {channel}")
    assert said.returncode == 0 and "Guildhouse › │ Guildhouse" in said.stdout, said.stderr
    # A new console doesn't replay what was said before it started...
    again = chat_in_shell(bot, f"guildhouse chat --channel {channel} < /dev/null")
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    # ...unless asked for the last N things the bot said there.
    back = chat_in_shell(bot, f"guildhouse chat --channel {channel} --history 1 < /dev/null")
    assert back.returncode == 0, back.stderr
    assert back.stdout.splitlines()[0] == "· the last 1 of what the bot said here:"
    assert "Guildhouse › │ Guildhouse" in back.stdout and "!about" not in back.stdout


class Typing:
    """`guildhouse chat` typed into line by line, reading what it prints as it comes."""

    def __init__(self, bot: Running, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "guildhouse"), "chat", *args],
            env=bot.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def type(self, line: str) -> int:
        """Type a line; the index in the output from which its answer is looked for."""
        mark = len(self.lines)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return mark

    def until(self, mark: int, *words: str, within: float = 60) -> str:
        """The first line after `mark` that has one of `words` (waits for it)."""
        deadline = time.monotonic() + within
        while True:
            for line in self.lines[mark:]:
                if any(w in line for w in words):
                    return line
            assert self.proc.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, f"none of {words} in:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    def close(self) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(60)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


def test_a_button_click_and_a_command_for_admins(bot: Running) -> None:
    member = Typing(bot, "--as", "member")
    try:
        mark = member.type("!roll 2d6")
        button = member.until(mark, "Reroll]")
        number = re.search(r"\[(\d+) \S+ Reroll\]", button).group(1)  # type: ignore[union-attr]
        # The bot takes a button's clicks once Discord's answer to its message has come back;
        # a click before that is ignored, as on Discord, and a person clicks again.
        for _ in range(5):
            mark = member.type(f":click {number}")
            answer = member.until(mark, "rerolled", "no answer within")
            if "rerolled" in answer:
                break
        assert "rerolled" in answer, "\n".join(member.lines)
        mark = member.type("!settings")
        assert "This command is for admins." in member.until(mark, "Guildhouse ›")
        code, said = member.close()
        assert code == 0, said
    finally:
        member.proc.kill()

    admin = chat_in_shell(bot, "printf '!settings\\n' | guildhouse chat --as admin")
    assert admin.returncode == 0, admin.stderr
    assert "no other member here has admin rights" in admin.stderr  # the owner stands in
    assert "Server settings" in admin.stdout and "Prefix: `!`" in admin.stdout
    assert "This command is for admins." not in admin.stdout


def test_the_console_says_when_the_bot_is_rate_limited(bot: Running) -> None:
    """Others fill the channel's message bucket; the console's command waits, and says why."""
    control = str(bot.sandbox["control_url"])

    async def burst(channel: str, users: list[str]) -> None:
        async with aiohttp.ClientSession() as http:
            for n in range(10):
                body = {"channel_id": channel, "author_id": users[n % 2], "content": "!roll d6"}
                async with http.post(f"{control}/_sandbox/messages", json=body) as resp:
                    assert resp.status == 200, await resp.text()

    guild = world(bot)["guilds"][1]
    channel = next(c["id"] for c in guild["channels"] if c["type"] == 0)
    others = guild["member_ids"][2:4]
    console = Typing(bot, "--channel", channel, "--as", "owner")
    try:
        asyncio.run(burst(channel, others))
        mark = console.type("!roll 2d6")
        notice = console.until(mark, "rate limited")
        assert "the bot is rate limited in this channel" in notice
        console.until(mark, "rolled")
        code, said = console.close()
        assert code == 0, said
    finally:
        console.proc.kill()


ROLLS = 15


def test_typed_on_a_terminal_quick_commands_say_they_wait_for_the_rate_limit(bot: Running) -> None:
    """The issue's case: several quick commands fill the channel's bucket; the answers behind
    them come late, and the console (on a terminal, all lines sent at once) says why."""
    guild = world(bot)["guilds"][3]
    channel = next(c["id"] for c in guild["channels"] if c["name"] == "general")
    main, side = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "guildhouse"), "chat", "--channel", channel, "--as", "moderator"],
        env={**bot.env, "NO_COLOR": "1"},
        stdin=side,
        stdout=side,
        stderr=side,
    )
    os.close(side)
    seen: list[bytes] = []

    def read() -> None:
        with contextlib.suppress(OSError):  # EIO once the console has exited
            while chunk := os.read(main, 4096):
                seen.append(chunk)

    def said(words: bytes, times: int = 1) -> Callable[[], bool]:
        def check() -> bool:
            assert proc.poll() is None, b"".join(seen).decode()
            return b"".join(seen).count(words) >= times

        return check

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # Fifteen, from a moderator (the command throttle holds a member to eight): Discord
        # lets five messages a channel through in 5 s, and on a loaded machine a member's
        # eight were once answered over more than 5 s, so none had to wait.
        os.write(main, b"!roll 1d6\n" * ROLLS)
        wait_until("the console says the bot is rate limited", said(b"rate limited"))
        text = b"".join(seen).decode()
        assert "the bot is rate limited in this channel" in text
        wait_until("every roll answered (the late answers do come)", said(b"rolled", ROLLS))
        os.write(main, b"\x04")  # Ctrl-D
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        reader.join(5)
        os.close(main)
        print(b"".join(seen).decode(errors="replace"))  # captured output, shown on a failure


def test_the_web_side_a_newcomer_opens(bot: Running) -> None:
    base = f"http://127.0.0.1:{bot.port}"
    with urllib.request.urlopen(base + "/", timeout=10) as resp:
        assert resp.url.endswith("/status") and resp.status == 200
    guild = world(bot)["guilds"][0]
    # The launcher has no Discord cache: the worker that has the server names it.
    with urllib.request.urlopen(f"{base}/leaderboard/{guild['id']}", timeout=10) as resp:
        page = resp.read().decode()
    assert f"<h1><bdi>{guild['name']}</bdi></h1>" in page


FILE_LINE = re.compile(r"📎 \[(\d+)\] (\S+\.png) \((\d+\.\d\d) KB, (\d+)×(\d+)\)")


def test_a_chart_is_shown_as_a_file_and_saved(bot: Running, tmp_path: Path) -> None:
    """`!stats` answers with a PNG chart: the console shows its name, size and dimensions (read
    from the PNG's header) and `:save` writes it, refusing a bad number, overwriting a file
    and an unwritable path."""
    guild = world(bot)["guilds"][4]
    channel = next(c["id"] for c in guild["channels"] if c["name"] == "general")
    member = Typing(bot, "--channel", channel)
    try:
        mark = member.type("!stats")
        shown = FILE_LINE.search(member.until(mark, "📎 ["))
        assert shown, "\n".join(member.lines)
        number, name, kb, width, height = shown.groups()
        mark = member.type(f":save {number} {tmp_path}")
        saved = member.until(mark, "saved", "cannot")
        assert saved == f"· saved {name} ({kb} KB, {width}×{height}) to {tmp_path / name}", saved
        data = (tmp_path / name).read_bytes()
        assert png_size(data[:24]) == (int(width), int(height))
        assert f"{len(data) / 1024:.2f}" == kb
        # What can't be done is said, and nothing is written.
        mark = member.type(":save 99")
        assert f"no file 99; :save N [PATH], N one of {number}" in member.until(mark, "no file")
        mark = member.type(f":save {number} {tmp_path}")
        assert f"{tmp_path / name} exists already" in member.until(mark, "exists")
        mark = member.type(f":save {number} {tmp_path / 'no such dir' / 'x.png'}")
        assert "No such file or directory" in member.until(mark, "cannot write")
        assert sorted(p.name for p in tmp_path.iterdir()) == [name]
        code, said = member.close()
        assert code == 0, said
    finally:
        member.proc.kill()


def test_slowmode_and_a_timeout_are_said_in_one_line(bot: Running) -> None:
    """A line the sandbox refuses as Discord refuses a user gets one clear line, not an error."""
    guild = world(bot)["guilds"][5]
    channel = next(c["id"] for c in guild["channels"] if c["name"] == "general")
    user, _ = pick_member(guild, "member")

    def owner(command: str) -> str:
        done = chat_in_shell(
            bot, f"printf '{command}\\n' | guildhouse chat --as owner --channel {channel}"
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "slowmode in" in owner("!slowmode 1m")
    member = Typing(bot, "--channel", channel, "--user", str(user))
    try:
        member.type("the first line goes through")
        mark = member.type("the second comes too soon")
        line = member.until(mark, "slowmode", "refused")
        assert re.fullmatch(
            r"· slowmode in #general: your message was not sent; you may post again in "
            r"\d+\.\d s",
            line,
        ), line
        assert "timed out" in owner(f"!timeout <@{user}> 10m testing the console")
        mark = member.type("hello?")
        line = member.until(mark, "timed out", "refused", "may not")
        assert re.fullmatch(
            r"· you are timed out in this server until \d\d:\d\d \(in 10 minutes\): not sent",
            line,
        ), line
        code, said = member.close()
        assert code == 0, said
        assert "Traceback" not in said and "refused" not in "\n".join(member.lines)
    finally:
        member.proc.kill()
