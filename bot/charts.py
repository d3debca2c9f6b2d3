"""Charts as PNG images, drawn with Pillow, shared by features that aren't allowed to import
each other's cogs (usage analytics, polls).

Pillow is imported inside the functions that draw, so a worker that never draws a chart never
loads it. Pure: no discord, redis or asyncpg.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

WIDTH, HEIGHT = 800, 400
_BG = (47, 49, 54)
_GRID = (70, 73, 80)
_TEXT = (220, 221, 222)
_BARS = (88, 101, 242)


def columns(
    labels: Sequence[str],
    values: Sequence[int],
    title: str,
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """Vertical bars, one per value, left to right, as PNG bytes of `width` x `height`;
    the first and last labels are written under the axis."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 60, width - 20, 40, height - 40
    draw.text((left, 12), title, fill=_TEXT, font=font)
    for i in range(5):
        y = top + (bottom - top) * i / 4
        draw.line([(left, y), (right, y)], fill=_GRID)
    most = max(values, default=0)
    slot = (right - left) / max(1, len(values))
    for i, value in enumerate(values):
        if value <= 0 or most <= 0:
            continue
        x0 = left + i * slot + slot * 0.15
        y = bottom - value / most * (bottom - top)
        draw.rectangle([(x0, y), (x0 + max(1.0, slot * 0.7), bottom)], fill=_BARS)
    draw.text((4, top - 6), f"{most:,}", fill=_BARS, font=font)
    draw.text((4, bottom - 6), "0", fill=_BARS, font=font)
    if labels:
        draw.text((left, bottom + 8), labels[0], fill=_TEXT, font=font)
        draw.text((right - 70, bottom + 8), labels[-1], fill=_TEXT, font=font)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def rows(
    labels: Sequence[str],
    values: Sequence[int],
    title: str,
    *,
    width: int = WIDTH,
    height: int | None = None,
) -> bytes:
    """Horizontal bars, one row per label with its value written after it (poll results), as
    PNG bytes; the height grows with the rows unless given."""
    from PIL import Image, ImageDraw, ImageFont

    row = 36
    height = height or 50 + row * max(1, len(values))
    img = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((12, 12), title, fill=_TEXT, font=font)
    total = sum(values)
    most = max(values, default=0)
    left, right = 200, width - 90
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 40 + i * row
        draw.text((12, y + 8), label[:30], fill=_TEXT, font=font)
        if most > 0 and value > 0:
            draw.rectangle(
                [(left, y + 4), (left + value / most * (right - left), y + row - 8)], fill=_BARS
            )
        share = f"{value:,} ({value / total:.0%})" if total else "0"
        draw.text((right + 8, y + 8), share, fill=_TEXT, font=font)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()
