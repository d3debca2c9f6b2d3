"""What you type in `guildhouse chat`: messages, slash commands, the console's own `:commands`
(click, pick, submit a form), and the pacing of piped input."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

from cluster.console.errors import InputError
from cluster.console.files import describe, download, target, write_new
from cluster.console.members import standing_of
from cluster.console.screen import TEXT_INPUT, Control
from cluster.console.session import ANSWER_WAIT, MESSAGES, Session
from cluster.console.slash import (
    CHANNEL,
    MENTIONABLE,
    ROLE,
    STRING,
    USER,
    _value,
    describe_commands,
    parse_slash,
)

SETTLE = 0.4  # s more, for what comes with an answer (an edit, a second message)

HELP = """The console's own commands (anything else is sent to the channel as you):
  /name opt:value ...   run the bot's slash command, options by name: /roll dice:2d6,
                        /remind create when:in 2h message:Check the oven
  :click [N]            press button N (the last one shown, without N)
  :pick N VALUE...      choose from menu N (option values, or @user, @role, #channel)
  :submit               fill in the form the bot opened: one line per field follows
  :save N [PATH]        save file N (the 📎 [N] numbers) to PATH: a new file, or into a
                        directory; without PATH, under its own name in this directory
  :commands             the bot's slash commands and their options
  :who                  who you are here, and where
  :help                 this list
  :quit                 leave (Ctrl-D does too)
  //text, ::text        send a line that starts with / or : as it is"""


class Console(Session):
    """One member in one channel: what you type goes to the sandbox's control API, what the
    bot sends there comes back through its outbox (long-polled) and is printed."""

    # -- what you type --

    async def handle(self, line: str, lines: asyncio.Queue[str | None]) -> bool:
        """Act on one line; True if it asks the bot for an answer."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return False
        if text.startswith(("::", "//")):
            return await self.send(text[1:])
        if text.startswith(":"):
            return await self.command(text, lines)
        if text.startswith("/"):
            return await self.slash(text)
        return await self.send(text)

    def echo(self, text: str) -> None:
        # What you say restarts the wait for silence at the end of piped input: the bot may
        # still answer it (a level-up for a chat line).
        self.last_output = time.monotonic()
        if self.interactive and self.out.isatty():
            # Replace the line as typed with the same line, said by you.
            print("\x1b[1A\x1b[2K", end="", file=self.out)
        self.say(f"{self.style.you(self.names.user(self.user_id))} › {text}")

    async def send(self, text: str) -> bool:
        self.echo(text)
        body = {"channel_id": str(self.channel_id), "author_id": str(self.user_id), "content": text}
        if await self._post(MESSAGES, body) is None:
            return False
        return asks_the_bot(text, int((self.world.get("bot") or {}).get("id", 0)))

    async def slash(self, text: str) -> bool:
        self.echo(text)
        try:
            name, options = parse_slash(text, await self.load_commands(), self.names)
        except InputError as exc:
            self.say(self.style.error(f"· {exc}"))
            return False
        body = {
            "channel_id": str(self.channel_id),
            "user_id": str(self.user_id),
            "name": name,
            "options": options,
        }
        return await self._interact(body)

    async def _interact(self, body: dict[str, Any]) -> bool:
        answer = await self._post("/_sandbox/interactions", body)
        if answer is None:
            return False
        self.mine.add(str(answer.get("id")))
        return True

    async def command(self, text: str, lines: asyncio.Queue[str | None]) -> bool:
        word, _, rest = text[1:].partition(" ")
        word = word.lower()
        if word in ("help", "h", "?"):
            self.say(*HELP.split("\n"))
        elif word in ("quit", "q", "exit"):
            raise EOFError
        elif word == "who":
            self.banner(standing_of(self.guild, self.user_id), "")
        elif word == "commands":
            try:
                self.say(*describe_commands(await self.load_commands()))
            except InputError as exc:
                self.say(self.style.error(f"· {exc}"))
        elif word == "click":
            return await self.click(rest.strip())
        elif word == "pick":
            return await self.pick(rest.strip())
        elif word == "submit":
            return await self.submit(lines)
        elif word == "save":
            await self.save(rest.strip())
        else:
            self.say(self.style.error(f"· no console command :{word}; :help lists them"))
        return False

    def _control(self, which: str, kind: str) -> Control | None:
        controls = [
            c for c in self.screen.controls.values() if (c.kind == "button") == (kind == "button")
        ]
        if not controls:
            self.say(self.style.error(f"· no {kind} on screen yet"))
            return None
        if not which:
            return max(controls, key=lambda c: c.number)
        if not which.isdigit() or int(which) not in self.screen.controls:
            self.say(self.style.error(f"· no {kind} {which}; the numbers are in [brackets]"))
            return None
        return self.screen.controls[int(which)]

    async def click(self, which: str) -> bool:
        control = self._control(which, "button")
        if control is None:
            return False
        self.echo(f":click {control.number} ({control.label})")
        return await self._interact(
            {
                "channel_id": str(self.channel_id),
                "user_id": str(self.user_id),
                "message_id": control.message_id,
                "custom_id": control.custom_id,
            }
        )

    async def pick(self, rest: str) -> bool:
        which, _, values = rest.partition(" ")
        control = self._control(which, "menu")
        if control is None:
            return False
        picked: list[str] = []
        for raw in values.split():
            option = next(
                (
                    o
                    for o in control.options
                    if raw.lower() in (str(o.get("value")).lower(), str(o.get("label")).lower())
                ),
                None,
            )
            if option is not None:
                picked.append(str(option.get("value")))
                continue
            decl = {
                "user menu": USER,
                "role menu": ROLE,
                "user or role menu": MENTIONABLE,
                "channel menu": CHANNEL,
            }.get(control.kind, STRING)
            try:
                picked.append(str(_value(":pick", "value", raw, {"type": decl}, self.names)))
            except InputError as exc:
                self.say(self.style.error(f"· {exc}"))
                return False
        self.echo(f":pick {control.number} {' '.join(picked)}")
        return await self._interact(
            {
                "channel_id": str(self.channel_id),
                "user_id": str(self.user_id),
                "message_id": control.message_id,
                "custom_id": control.custom_id,
                "values": picked,
            }
        )

    async def save(self, rest: str) -> None:
        """`:save N [path]`: write file N to disk (never over an existing file)."""
        which, _, raw = rest.partition(" ")
        files = self.screen.files
        if not files:
            self.say(self.style.error("· no file on screen yet"))
            return
        if not which.isdigit() or int(which) not in files:
            shown = ", ".join(str(n) for n in sorted(files))
            self.say(
                self.style.error(
                    f"· no file {which or '(none given)'}; :save N [PATH], N one of {shown}"
                )
            )
            return
        attachment = files[int(which)]
        path = target(raw.strip(), str(attachment.get("filename") or ""), Path.cwd())
        if path.exists():
            self.say(self.style.error(f"· {path} exists already; give another path"))
            return
        try:
            data = await download(self.http, attachment, self.base)
        except ValueError as exc:
            self.say(self.style.error(f"· cannot get file {which}: {exc}"))
            return
        try:
            await asyncio.to_thread(write_new, path, data)
        except OSError as exc:
            self.say(self.style.error(f"· cannot write {path}: {exc.strerror or exc}"))
            return
        self.tell(f"saved {describe(attachment)} to {path}")

    async def submit(self, lines: asyncio.Queue[str | None]) -> bool:
        form = self.form
        if form is None:
            self.say(self.style.error("· the bot has opened no form for you"))
            return False
        fields: dict[str, Any] = {}
        for field_ in form.get("inputs") or []:
            label = field_.get("label") or field_.get("custom_id")
            if self.interactive:
                print(f"{label}: ", end="", file=self.out, flush=True)
            answer = await lines.get()
            if answer is None:
                raise EOFError
            value = answer.rstrip("\r\n")
            # A text input takes the line as typed; every menu in a form (string, user, role,
            # channel, mentionable) takes a list of values, one per word.
            fields[str(field_["custom_id"])] = (
                value if field_.get("type", TEXT_INPUT) == TEXT_INPUT else value.split()
            )
            if not self.interactive:
                self.say(f"  {label}: {value}")
        self.form = None
        return await self._interact(
            {
                "channel_id": str(self.channel_id),
                "user_id": str(self.user_id),
                "fields": fields,
                "custom_id": form.get("custom_id"),
            }
        )

    # -- pacing piped input --

    async def until_answered(self, seen: int) -> None:
        """Wait for the bot's first answer after `seen` things, then for what comes with it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_WAIT
        while self.answers <= seen:
            left = deadline - loop.time()
            if left <= 0:
                self.tell(f"no answer within {ANSWER_WAIT:.0f} s; going on")
                if self.asks:
                    self.asks.popleft()  # this line's: the next one is waited for afresh
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
            # Held back by a rate limit: the answer is late, not lost.
            limited = self.limits is not None and self.answers <= seen
            if limited and self.limits is not None and await self.limits.held_back():
                deadline = max(deadline, loop.time() + ANSWER_WAIT)
        await self.until_quiet(SETTLE, SETTLE * 8)

    async def until_quiet(self, quiet: float, most: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + most
        while (left := quiet - (time.monotonic() - self.last_output)) > 0 and loop.time() < end:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, end - loop.time()))


_COMMAND_LIKE = re.compile(r"[!?.$%&+=~;,^][^\s!?.]")


def asks_the_bot(text: str, bot_id: int) -> bool:
    """Whether a line reads as a command, so piped input waits for its answer: a prefix
    character and a word (`!roll`, `?help`, `.top`), or a mention of the bot."""
    stripped = text.lstrip()
    if bot_id and re.match(rf"<@!?{bot_id}>", stripped):
        return True
    return bool(_COMMAND_LIKE.match(stripped))
