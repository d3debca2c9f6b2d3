"""What the bot sends, rendered: messages, embeds, files (numbered, for `:save N`), buttons and
menus (numbered as they appear, so `:click N` and `:pick N` can name them), forms."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from cluster.console.files import describe
from cluster.console.markup import Directory, Style, render_markup, visible_len

BUTTON, TEXT_INPUT = 2, 4
SELECTS = {3: "menu", 5: "user menu", 6: "role menu", 7: "user or role menu", 8: "channel menu"}
TEXT_DISPLAY, SEPARATOR = 10, 14
LINK = 5
ATTACHED = "attachment://"


@dataclass
class Control:
    """A numbered button or menu on screen."""

    number: int
    message_id: str
    custom_id: str
    label: str
    kind: str  # "button" or a SELECTS name
    options: list[dict[str, Any]] = field(default_factory=list)
    disabled: bool = False


@dataclass
class Screen:
    """Renders what the bot sends, numbering buttons and menus as they appear (a message's
    control keeps its number through edits)."""

    names: Directory
    style: Style
    bot_name: str = "Guildhouse"
    tz: tzinfo | None = None
    controls: dict[int, Control] = field(default_factory=dict)
    # Files shown, by number (`:save N`); a file keeps its number through the message's edits.
    files: dict[int, dict[str, Any]] = field(default_factory=dict)
    _numbers: dict[tuple[str, str], int] = field(default_factory=dict)
    _file_numbers: dict[str, int] = field(default_factory=dict)

    def markup(self, text: str) -> str:
        return render_markup(text, self.names, self.style, tz=self.tz)

    def entry(self, entry: dict[str, Any], *, mine: bool = True) -> list[str]:
        """The lines for one outbox entry. `mine`: an ephemeral answer is for this user."""
        kind = str(entry.get("kind") or "message")
        s = self.style
        if kind == "delete":
            return [s.dim(f"· {self.bot_name} deleted a message")]
        if kind == "reaction":
            return [s.dim(f"· {self.bot_name} reacted {entry.get('emoji', '')}")]
        if kind == "modal":
            return self._modal(entry)
        who = s.bot(self.bot_name)
        if kind == "edit":
            who += s.dim(" (edited)")
        if entry.get("ephemeral"):
            who += s.dim(" (only you can see this)" if mine else " (to someone else)")
        body = self.body(entry)
        head = f"{who} › "
        indent = " " * visible_len(head)
        if not body:
            body = [s.dim("(nothing)")]
        return [head + body[0], *(indent + line if line else "" for line in body[1:])]

    def body(self, entry: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        if entry.get("content"):
            lines += self.markup(str(entry["content"])).split("\n")
        for embed in entry.get("embeds") or []:
            lines += self.embed(embed)
        lines += self.attachments(entry.get("attachments"))
        lines += self.components(str(entry.get("message_id") or ""), entry.get("components"))
        return lines

    def embed(self, embed: dict[str, Any]) -> list[str]:
        s = self.style
        colour = embed.get("color") if isinstance(embed.get("color"), int) else None
        rows: list[str] = []
        author = (embed.get("author") or {}).get("name")
        if author:
            rows.append(s.dim(self.markup(str(author))))
        if embed.get("title"):
            rows.append(s.bold(self.markup(str(embed["title"]))))
        if embed.get("description"):
            rows += self.markup(str(embed["description"])).split("\n")
        for f in embed.get("fields") or []:
            name, value = self.markup(str(f.get("name", ""))), self.markup(str(f.get("value", "")))
            first, *more = value.split("\n")
            rows.append(f"{s.bold(name)}: {first}")
            rows += ["  " + line for line in more]
        footer = (embed.get("footer") or {}).get("text")
        if footer:
            rows.append(s.dim(self.markup(str(footer))))
        for key in ("image", "thumbnail"):
            url = (embed.get(key) or {}).get("url")
            if url:
                # An uploaded file shown in the embed: by its name (its 📎 line follows).
                shown = f"📎 {url[len(ATTACHED) :]}" if url.startswith(ATTACHED) else url
                rows.append(s.dim(f"[{key}: {shown}]"))
        bar = s.bar(colour)
        return [f"{bar} {row}" for row in rows]

    def attachments(self, attachments: Any) -> list[str]:
        """One line a file: `📎 [1] chart.png (12.34 KB, 800×400)`, numbered for `:save`."""
        lines: list[str] = []
        for a in attachments or []:
            if not isinstance(a, dict):
                continue
            key = str(a.get("id") or a.get("url") or len(self._file_numbers))
            number = self._file_numbers.setdefault(key, len(self._file_numbers) + 1)
            self.files[number] = a
            lines.append(f"📎 {self.style.bold(f'[{number}]')} {describe(a)}")
        return lines

    def components(self, message_id: str, components: Any) -> list[str]:
        lines: list[str] = []
        for row in components or []:
            if not isinstance(row, dict):
                continue
            kind = row.get("type")
            if kind == TEXT_DISPLAY:
                lines += self.markup(str(row.get("content", ""))).split("\n")
            elif kind == SEPARATOR:
                lines.append(self.style.dim("─" * 20))
            children = [c for c in row.get("components") or [] if isinstance(c, dict)]
            accessory = row.get("accessory")
            if isinstance(accessory, dict):
                children.append(accessory)
            parts = [self.control(message_id, c) for c in children]
            flat = [p for p in parts if p]
            if flat:
                lines.append("  ".join(flat))
        return lines

    def control(self, message_id: str, c: dict[str, Any]) -> str:
        kind = c.get("type")
        if kind == TEXT_DISPLAY:
            return self.markup(str(c.get("content", "")))
        if kind == BUTTON:
            emoji = (c.get("emoji") or {}).get("name") or ""
            label = " ".join(p for p in (emoji, str(c.get("label") or "")) if p)
            if c.get("style") == LINK or c.get("url"):
                return f"[{label} → {c.get('url')}]"
            if not c.get("custom_id"):
                return f"[{label}]"
            number = self._number(message_id, str(c["custom_id"]))
            off = bool(c.get("disabled"))
            self.controls[number] = Control(
                number, message_id, str(c["custom_id"]), label, "button", disabled=off
            )
            text = f"[{number} {label}]" + (" (disabled)" if off else "")
            return self.style.dim(text) if off else self.style.bold(text)
        if kind in SELECTS and c.get("custom_id"):
            number = self._number(message_id, str(c["custom_id"]))
            options = [o for o in c.get("options") or [] if isinstance(o, dict)]
            off = bool(c.get("disabled"))
            self.controls[number] = Control(
                number,
                message_id,
                str(c["custom_id"]),
                str(c.get("placeholder") or ""),
                SELECTS[int(kind)],
                options,
                off,
            )
            what = ", ".join(f"{o.get('label')} ({o.get('value')})" for o in options)
            low, high = int(c.get("min_values", 1)), int(c.get("max_values", 1))
            pick = "one" if high == 1 else f"{low} to {high}"
            text = f"[{number} ▾ {c.get('placeholder') or SELECTS[int(kind)]}: choose {pick}"
            return text + (f" of {what}]" if what else "]") + (" (disabled)" if off else "")
        return ""

    def _number(self, message_id: str, custom_id: str) -> int:
        key = (message_id, custom_id)
        if key not in self._numbers:
            self._numbers[key] = len(self._numbers) + 1
        return self._numbers[key]

    def _modal(self, entry: dict[str, Any]) -> list[str]:
        s = self.style
        lines = [
            s.bot(self.bot_name) + f" › opens a form for you: {s.bold(str(entry.get('title', '')))}"
        ]
        for n, field_ in enumerate(entry.get("inputs") or [], 1):
            need = "" if field_.get("required", True) else " (optional)"
            lines.append(f"    {n}. {field_.get('label') or field_.get('custom_id')}{need}")
        lines.append(s.dim("    answer with :submit, then one line per field"))
        return lines
