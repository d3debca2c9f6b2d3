"""Which transport compression the gateway connections use: zlib-stream (default) or zstd-stream.

discord.py picks zstd-stream whenever a zstd module can be imported (the `zstandard` package,
or `compression.zstd` from Python 3.14) and zlib-stream otherwise; it reads the choice from
`discord.utils._ActiveDecompressionContext` each time a shard connects, for both the gateway
URL's `compress=` and the decompressor, so setting that attribute before the bot connects is
all it takes.

Why zlib-stream by default: a zstd stream's decompressor keeps a window as large as the
sender's frame header declares (2 MiB at zstd's default level 3, which the sandbox uses; Discord
doesn't publish its own), for as long as the connection lives, in every shard. zlib's window is
32 KiB, so a worker holding 16 shards keeps about 32 MiB more with zstd; what that makes of a
worker's memory per 1,000 guilds is `python -m bench memory`'s to say (README, Benchmarks).
zstd decompresses faster and compresses a little better, which counts for bandwidth, not for a
bot's CPU: inflating zlib is a small part of reading an event.

Relies on: `discord.utils._ActiveDecompressionContext`, a class with `COMPRESSION_TYPE` (the
`compress=` value) whose instances have `decompress(bytes) -> str | None`, made anew for each
connection.
"""

from __future__ import annotations

import zlib

import discord.utils

RELIES_ON = ("discord.utils:_ActiveDecompressionContext.COMPRESSION_TYPE",)

CHOICES = ("zlib-stream", "zstd-stream")


class ZlibStream:
    """A zlib-stream decompression context, as discord.py's own (`_ZlibDecompressionContext`),
    which it defines only when no zstd module is present: one zlib context for the whole
    connection; a message is complete when it ends with Z_SYNC_FLUSH's suffix."""

    __slots__ = ("buffer", "context")

    COMPRESSION_TYPE = "zlib-stream"

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.context = zlib.decompressobj()

    def decompress(self, data: bytes, /) -> str | None:
        self.buffer.extend(data)
        if len(data) < 4 or data[-4:] != b"\x00\x00\xff\xff":
            return None
        message = self.context.decompress(self.buffer)
        self.buffer = bytearray()
        return message.decode("utf-8")


# discord.py's own choice. Read without failing here, so that a discord.py without it is
# reported by bot.dpy.check() in one line rather than by this import.
_ORIGINAL = getattr(discord.utils, "_ActiveDecompressionContext", None)


def install(kind: str) -> None:
    """Make every gateway connection this process opens from now on use `kind`."""
    if kind == "zlib-stream":
        discord.utils._ActiveDecompressionContext = ZlibStream
    elif kind == "zstd-stream":
        if _ORIGINAL is None or _ORIGINAL.COMPRESSION_TYPE != "zstd-stream":
            raise ValueError("zstd-stream needs the zstandard package (or Python 3.14+)")
        discord.utils._ActiveDecompressionContext = _ORIGINAL
    else:
        raise ValueError(f"gateway compression {kind!r}: expected one of {', '.join(CHOICES)}")
