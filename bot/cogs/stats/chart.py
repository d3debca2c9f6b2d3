"""The 30-day chart as a PNG: members (a line) over messages per day (bars), drawn with Pillow.

Imported only when a chart is drawn (the cog imports it inside the function that draws), so a
worker that never draws one never loads Pillow. Pure: no discord, redis or asyncpg.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from bot.cogs.stats.report import Series

WIDTH, HEIGHT = 800, 400
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 60, 60, 40, 40
_BG = (47, 49, 54)
_GRID = (70, 73, 80)
_TEXT = (220, 221, 222)
_BARS = (88, 101, 242)
_LINE = (87, 242, 135)


def _scale(lo: float, hi: float, top: int, bottom: int, value: float) -> float:
    if hi <= lo:
        return (top + bottom) / 2
    return bottom - (value - lo) / (hi - lo) * (bottom - top)


def render(s: Series, title: str) -> bytes:
    """The chart of `s` as PNG bytes, WIDTH x HEIGHT."""
    img = Image.new("RGB", (WIDTH, HEIGHT), _BG)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = _PAD_L, WIDTH - _PAD_R, _PAD_T, HEIGHT - _PAD_B
    draw.text((left, 12), title, fill=_TEXT, font=font)
    for i in range(5):
        y = top + (bottom - top) * i / 4
        draw.line([(left, y), (right, y)], fill=_GRID)
    n = max(1, len(s.days))
    slot = (right - left) / n
    most = max(s.messages, default=0)
    for i, count in enumerate(s.messages):
        if count <= 0:
            continue
        x0 = left + i * slot + slot * 0.15
        y = _scale(0, most, top, bottom, count)
        draw.rectangle([(x0, y), (x0 + slot * 0.7, bottom)], fill=_BARS)
    known = [m for m in s.members if m is not None]
    if known:
        lo, hi = min(known), max(known)
        if lo == hi:
            lo, hi = lo - 1, hi + 1
        points = [
            (left + i * slot + slot / 2, _scale(lo, hi, top, bottom, m))
            for i, m in enumerate(s.members)
            if m is not None
        ]
        if len(points) > 1:
            draw.line(points, fill=_LINE, width=3)
        for x, y in points:
            draw.ellipse([(x - 2, y - 2), (x + 2, y + 2)], fill=_LINE)
        draw.text((right + 6, top - 6), f"{hi:,}", fill=_LINE, font=font)
        draw.text((right + 6, bottom - 6), f"{lo:,}", fill=_LINE, font=font)
    draw.text((4, top - 6), f"{most:,}", fill=_BARS, font=font)
    draw.text((4, bottom - 6), "0", fill=_BARS, font=font)
    if s.days:
        draw.text((left, bottom + 8), s.days[0].isoformat(), fill=_TEXT, font=font)
        draw.text((right - 60, bottom + 8), s.days[-1].isoformat(), fill=_TEXT, font=font)
    draw.text((right - 220, 12), "line: members  bars: messages/day", fill=_TEXT, font=font)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()
