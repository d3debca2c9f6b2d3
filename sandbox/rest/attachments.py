"""Files a bot uploads with a message (multipart/form-data: `payload_json` and `files[n]`, as
discord.py sends them): kept, described in the message's `attachments`, and served at their
URL (`/attachments/{channel_id}/{attachment_id}/{filename}`, as Discord's CDN serves them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from sandbox.errors import ApiError
from sandbox.rest.base import Attachment, State, not_json

if TYPE_CHECKING:
    from sandbox.world import Channel

FILE_LIMIT = 10 * 1024 * 1024  # bytes per file, as the interaction's attachment_size_limit
MAX_FILES = 10
FILE_FIELD = re.compile(r"files\[([0-9]{1,2})\]|file([0-9]{0,2})")


@dataclass
class Upload:
    index: int
    filename: str
    content_type: str
    data: bytes


def too_large() -> ApiError:
    return ApiError(413, 40005, "Request entity too large")


async def read_multipart(request: web.Request) -> tuple[bytes | None, list[Upload]]:
    """(the payload_json part, the files), or Discord's error for a body it can't read."""
    payload: bytes | None = None
    files: list[Upload] = []
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise not_json()
            name = part.name or ""
            if name == "payload_json":
                payload = bytes(await part.read())
                continue
            match = FILE_FIELD.fullmatch(name)
            if match is None:
                continue  # Discord ignores parts it doesn't know
            data = await part.read(decode=False)
            if len(data) > FILE_LIMIT:
                raise too_large()
            index = int(match.group(1) or match.group(2) or 0)
            files.append(
                Upload(
                    index,
                    part.filename or f"file{index}",
                    part.headers.get("Content-Type", "application/octet-stream"),
                    bytes(data),
                )
            )
    except (ValueError, AssertionError, UnicodeDecodeError):
        raise not_json() from None
    if len(files) > MAX_FILES:
        raise ApiError(400, 30015, "Maximum number of attachments in a message reached (10)")
    return payload, files


def attach(
    state: State, channel: Channel, body: dict[str, Any], files: list[Upload], kept: list[Any]
) -> list[dict[str, Any]]:
    """A message's attachments after a send or an edit: those of `kept` (the message's own)
    whose ids `body.attachments` names, and each upload (named there by its index, or not)."""
    listed = body.get("attachments")
    listed = [a for a in listed if isinstance(a, dict)] if isinstance(listed, list) else []
    wanted = {str(a.get("id")) for a in listed}
    out = [a for a in kept if isinstance(a, dict) and a.get("id") in wanted]
    by_index = {str(a.get("id")): a for a in listed}
    for upload in files:
        meta = by_index.get(str(upload.index), {})
        filename = meta.get("filename") if isinstance(meta.get("filename"), str) else None
        aid = state.world.ids.now()
        item = Attachment(
            aid, channel.id, filename or upload.filename, upload.content_type, upload.data
        )
        state.attachments[aid] = item
        url = f"{state.base_url}/attachments/{channel.id}/{aid}/{quote(item.filename)}"
        entry: dict[str, Any] = {
            "id": str(aid),
            "filename": item.filename,
            "size": len(upload.data),
            "url": url,
            "proxy_url": url,
            "content_type": upload.content_type,
        }
        if isinstance(meta.get("description"), str):
            entry["description"] = meta["description"][:1024]
        out.append(entry)
    return out


class Attachments:
    """Serves the kept files (no token needed, as Discord's CDN links)."""

    def __init__(self, state: State) -> None:
        self.state = state

    def find(self, attachment_id: int) -> Attachment | None:
        return self.state.attachments.get(attachment_id)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info.get("attachment_id", "")
        item = self.find(int(raw)) if raw.isascii() and raw.isdigit() and len(raw) <= 20 else None
        if (
            item is None
            or str(item.channel_id) != request.match_info.get("channel_id")
            or item.filename != request.match_info.get("filename")
        ):
            return web.Response(status=404, text="Not Found")
        return web.Response(body=item.data, headers={"Content-Type": item.content_type})
