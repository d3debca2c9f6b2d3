"""`guildhouse chat`: talk to the bot from a terminal, as a member of a sandbox server.

The console plays a user of the sandbox through its control API (`/_sandbox/...`), found in
DATA_DIR/sandbox.json, which `guildhouse run` writes when it starts a sandbox, or given with
--url. What you type is sent as that member's message, a slash command (`/roll dice:2d6`) or a
click (`:click 1`); what the bot sends to the channel from then on is printed as Discord's
client would show it: mentions, channels, roles and `<t:...>` timestamps by name and time,
markdown as styles (on a terminal) or plain text, embeds as indented blocks, buttons numbered.

It is a plain line console on purpose: it works the same piped (`printf '!ping\\n' | guildhouse
chat` prints the answer and exits) as typed, and its output reads as a transcript.

How piped input is paced (documented in the README): each line that asks the bot something
(a command prefix such as `!`, a mention of the bot, a slash command, a click) waits for the
bot's first answer (up to ANSWER_WAIT seconds, longer while the bot is rate limited) and
SETTLE seconds more for what comes with it (an edit, a second message); after the last line
the console waits until the bot has said nothing for QUIET seconds (at most TAIL seconds), then
exits 0.

The parts: run.py (the loop), console.py (what you type), session.py (the sandbox's control
API and following the channel), screen.py and markup.py (what the bot sends, as a client shows
it), files.py (the bot's files: sizes, PNG dimensions, `:save`; and refusals of your lines,
a timeout or slowmode, in one line), slash.py (slash commands typed as text), members.py (who
you speak as), rate_limits.py (why an answer is late), sandbox_file.py (finding the sandbox),
errors.py.
"""

from __future__ import annotations

from cluster.console.console import Console, asks_the_bot
from cluster.console.errors import ChatError, InputError
from cluster.console.markup import Directory, Style, format_timestamp, relative_time, render_markup
from cluster.console.members import pick_member, standing_of
from cluster.console.rate_limits import RateLimitWatch, rest_key
from cluster.console.run import chat
from cluster.console.sandbox_file import (
    SANDBOX_FILE,
    find_control_url,
    remove_sandbox_file,
    running_sandbox,
    write_sandbox_file,
)
from cluster.console.screen import Control, Screen
from cluster.console.slash import describe_commands, parse_slash

__all__ = [
    "SANDBOX_FILE",
    "ChatError",
    "Console",
    "Control",
    "Directory",
    "InputError",
    "RateLimitWatch",
    "Screen",
    "Style",
    "asks_the_bot",
    "chat",
    "describe_commands",
    "find_control_url",
    "format_timestamp",
    "parse_slash",
    "pick_member",
    "relative_time",
    "remove_sandbox_file",
    "render_markup",
    "rest_key",
    "running_sandbox",
    "standing_of",
    "write_sandbox_file",
]
