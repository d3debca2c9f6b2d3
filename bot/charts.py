"""Charts as PNG images, drawn with Pillow, shared by features that aren't allowed to import
each other's cogs (statistics, usage analytics, polls).

Pillow is imported inside the functions that draw, so a worker that never draws a chart never
loads it. Pure: no discord, redis or asyncpg.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

WIDTH, HEIGHT = 800, 400
_BG = (47, 49, 54)
_GRID = (70, 73, 80)
_TEXT = (220, 221, 222)
_BARS = (88, 101, 242)
_LINE = (87, 242, 135)


def _canvas(width: int, height: int) -> tuple[Image.Image, Any, Any]:
    """A blank image, its drawing context and the default font (Pillow imported here)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), _BG)
    return img, ImageDraw.Draw(img), ImageFont.load_default()


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _scale(lo: float, hi: float, top: float, bottom: float, value: float) -> float:
    """The y of `value` on an axis from `lo` (at `bottom`) to `hi` (at `top`)."""
    if hi <= lo:
        return (top + bottom) / 2
    return bottom - (value - lo) / (hi - lo) * (bottom - top)


def columns(
    labels: Sequence[str],
    values: Sequence[int],
    title: str,
    *,
    line: Sequence[int | None] | None = None,
    legend: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """Vertical bars, one per value, left to right, as PNG bytes of `width` x `height`;
    the first and last labels are written under the axis. With `line` (one point per bar,
    None where unknown), a second series is drawn over the bars on its own scale, written on
    the right (statistics: members over messages per day); `legend` goes top right."""
    img, draw, font = _canvas(width, height)
    left, right, top, bottom = 60, width - (60 if line is not None else 20), 40, height - 40
    draw.text((left, 12), title, fill=_TEXT, font=font)
    for i in range(5):
        y = top + (bottom - top) * i / 4
        draw.line([(left, y), (right, y)], fill=_GRID)
    most = max(values, default=0)
    slot = (right - left) / max(1, len(values), len(line or ()))
    for i, value in enumerate(values):
        if value <= 0 or most <= 0:
            continue
        x0 = left + i * slot + slot * 0.15
        y = _scale(0, most, top, bottom, value)
        draw.rectangle([(x0, y), (x0 + max(1.0, slot * 0.7), bottom)], fill=_BARS)
    if line is not None:
        _overlay(draw, font, line, slot=slot, box=(left, right, top, bottom))
    draw.text((4, top - 6), f"{most:,}", fill=_BARS, font=font)
    draw.text((4, bottom - 6), "0", fill=_BARS, font=font)
    if labels:
        draw.text((left, bottom + 8), labels[0], fill=_TEXT, font=font)
        draw.text((right - 70, bottom + 8), labels[-1], fill=_TEXT, font=font)
    if legend:
        draw.text((right - 220, 12), legend, fill=_TEXT, font=font)
    return _png(img)


def _overlay(
    draw: Any,
    font: Any,
    line: Sequence[int | None],
    *,
    slot: float,
    box: tuple[float, float, float, float],
) -> None:
    """The line series over the bars, its lowest and highest values on the right axis."""
    left, right, top, bottom = box
    known = [v for v in line if v is not None]
    if not known:
        return
    lo, hi = min(known), max(known)
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    points = [
        (left + i * slot + slot / 2, _scale(lo, hi, top, bottom, v))
        for i, v in enumerate(line)
        if v is not None
    ]
    if len(points) > 1:
        draw.line(points, fill=_LINE, width=3)
    for x, y in points:
        draw.ellipse([(x - 2, y - 2), (x + 2, y + 2)], fill=_LINE)
    draw.text((right + 6, top - 6), f"{hi:,}", fill=_LINE, font=font)
    draw.text((right + 6, bottom - 6), f"{lo:,}", fill=_LINE, font=font)


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
    row = 36
    height = height or 50 + row * max(1, len(values))
    img, draw, font = _canvas(width, height)
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
    return _png(img)
