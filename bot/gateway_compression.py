"""Which transport compression the gateway connections use: zlib-stream (default) or zstd-stream.

discord.py picks zstd-stream whenever a zstd module can be imported (the `zstandard` package,
or `compression.zstd` from Python 3.14) and zlib-stream otherwise; it reads the choice from
`discord.utils._ActiveDecompressionContext` each time a shard connects, for both the gateway
URL's `compress=` and the decompressor, so setting that attribute before the bot connects is
all it takes.

Why zlib-stream by default: a zstd stream's decompressor keeps a window as large as the
sender's frame header declares (2 MiB at zstd's default level 3, which the sandbox uses; Discord
doesn't publish its own), for as long as the connection lives, in every shard. zlib's window is
32 KiB. A worker holding 16 shards keeps about 32 MiB of zstd windows; `python -m bench memory`
(2 shards) measured a worker at 9.5 MiB per 1,000 guilds with zstd-stream, 5.4 MiB with zlib.
zstd decompresses faster and compresses a little better, which counts for bandwidth, not for a
bot's CPU: at 1,000 messages a second inflating zlib costs a few milliseconds a second.
"""

from __future__ import annotations

import zlib

import discord.utils

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


_ORIGINAL = discord.utils._ActiveDecompressionContext


def use(kind: str) -> None:
    """Make every gateway connection this process opens from now on use `kind`."""
    if kind == "zlib-stream":
        discord.utils._ActiveDecompressionContext = ZlibStream
    elif kind == "zstd-stream":
        if _ORIGINAL.COMPRESSION_TYPE != "zstd-stream":
            raise ValueError("zstd-stream needs the zstandard package (or Python 3.14+)")
        discord.utils._ActiveDecompressionContext = _ORIGINAL
    else:
        raise ValueError(f"gateway compression {kind!r}: expected one of {', '.join(CHOICES)}")
