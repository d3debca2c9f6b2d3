"""Files the bot sends and refusals of what you say, as a client shows them.

Files: each attachment of a message is a line with its number, name, size and, for a PNG, its
width and height (read from the file's first 24 bytes, the PNG signature and IHDR chunk: the
sandbox, unlike Discord, doesn't say them); `:save N [path]` writes one to disk.

Refusals: when the sandbox refuses a member's line as Discord refuses a user (403 because the
member is timed out, 429 code 20016 for slowmode), one line says so in a person's words."""

from __future__ import annotations

import re
import struct
import time
from datetime import tzinfo
from pathlib import Path
from typing import Any

import aiohttp

from cluster.console.markup import format_timestamp, relative_time

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_HEAD = 24  # signature (8), IHDR length (4) and type (4), width (4), height (4)
MISSING_PERMISSIONS, SLOWMODE = 50013, 20016


def png_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's first 24 bytes; None if they aren't a PNG's."""
    if len(head) < PNG_HEAD or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return (width, height) if width and height else None


def is_png(attachment: dict[str, Any]) -> bool:
    kind = str(attachment.get("content_type") or "").split(";")[0].strip().lower()
    return kind == "image/png" or str(attachment.get("filename") or "").lower().endswith(".png")


def human_size(size: int) -> str:
    """A file's size as Discord's client writes it: 812 bytes, 12.34 KB, 1.50 MB."""
    if size < 1024:
        return f"{size} byte" + ("" if size == 1 else "s")
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def describe(attachment: dict[str, Any]) -> str:
    """`chart.png (12.34 KB, 800×400)`, and the file's description if it has one."""
    parts = [human_size(int(attachment.get("size") or 0))]
    width, height = attachment.get("width"), attachment.get("height")
    if isinstance(width, int) and isinstance(height, int):
        parts.append(f"{width}×{height}")
    text = f"{attachment.get('filename') or 'file'} ({', '.join(parts)})"
    if attachment.get("description"):
        text += f": {attachment['description']}"
    return text


def safe_name(filename: str) -> str:
    """The file's own name, never a path the bot chose (`../../.bashrc` is `.bashrc`)."""
    name = Path(filename.replace("\\", "/")).name
    return name if name not in ("", ".", "..") else "file"


def target(raw: str, filename: str, cwd: Path) -> Path:
    """Where `:save N [path]` writes: the file's name in the current directory without a
    path, in the directory a path names, or the path itself."""
    name = safe_name(filename)
    if not raw:
        return cwd / name
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = cwd / path
    return path / name if path.is_dir() else path


def write_new(path: Path, data: bytes) -> None:
    """Write a new file (never over an existing one: a client's save asks first)."""
    with path.open("xb") as f:
        f.write(data)


def urls_of(attachment: dict[str, Any], control: str) -> list[str]:
    """Where a file's bytes are: its `url` (as a client downloads it), then the control API's
    `/_sandbox/attachments/{id}`."""
    urls = [str(attachment["url"])] if attachment.get("url") else []
    if attachment.get("id"):
        urls.append(f"{control}/_sandbox/attachments/{attachment['id']}")
    return urls


async def measure(http: aiohttp.ClientSession, attachments: list[Any], control: str) -> None:
    """Set `width` and `height` of each PNG that lacks them, from its first bytes."""
    for a in attachments:
        if not isinstance(a, dict) or not is_png(a) or "width" in a:
            continue
        for url in urls_of(a, control):
            try:
                async with http.get(url) as resp:
                    if resp.status != 200:
                        continue
                    size = png_size(await resp.content.read(PNG_HEAD))
            except (aiohttp.ClientError, ValueError):
                continue
            if size is not None:
                a["width"], a["height"] = size
            break


async def download(http: aiohttp.ClientSession, attachment: dict[str, Any], control: str) -> bytes:
    """The file's bytes; ValueError says why there are none."""
    why = "it has no address"
    for url in urls_of(attachment, control):
        try:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return await resp.read()
                why = f"the sandbox answered {resp.status}"
        except aiohttp.ClientError as exc:
            why = f"the sandbox can't be reached ({exc})"
    raise ValueError(why)


def refusal(
    status: int,
    data: Any,
    *,
    channel: str,
    timed_out_until: float | None,
    member_known: bool = True,
    tz: tzinfo | None = None,
    now: float | None = None,
) -> str | None:
    """One line for a line of yours Discord refused as it refuses a user (None: another
    refusal). `timed_out_until`: when your timeout ends, if you are timed out; `member_known`:
    False if your member couldn't be looked up (so whether you are timed out is not known)."""
    code = data.get("code") if isinstance(data, dict) else None
    if status == 429 and code == SLOWMODE:
        wait = _retry_after(data)
        again = f"; you may post again in {wait:.1f} s" if wait is not None else ""
        return f"slowmode in #{channel}: your message was not sent{again}"
    if status == 403 and code == MISSING_PERMISSIONS:
        if timed_out_until is not None:
            now = time.time() if now is None else now
            at = format_timestamp(int(timed_out_until), "t", now, tz)
            left = relative_time(timed_out_until - now)
            return f"you are timed out in this server until {at} ({left}): not sent"
        if not member_known:  # the member couldn't be looked up: either may be why
            return f"you may not send messages in #{channel} (timed out, or no Send Messages)"
        return f"you may not send messages in #{channel}: not sent (403 Missing Permissions)"
    return None


def _retry_after(data: dict[str, Any]) -> float | None:
    if isinstance(data.get("retry_after"), int | float):
        return float(data["retry_after"])
    found = re.search(r"retry in ([\d.]+) s", str(data.get("message") or ""))
    return float(found.group(1)) if found else None
