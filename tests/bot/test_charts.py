"""bot/charts.py: the one chart module (statistics, analytics, polls), Pillow only when drawing."""

from __future__ import annotations

import io
import subprocess
import sys

from bot import charts


def _image(png: bytes):  # type: ignore[no-untyped-def]
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return img.convert("RGB")


def _has(img, colour: tuple[int, int, int]) -> bool:  # type: ignore[no-untyped-def]
    return any(c == colour for _, c in img.getcolors(img.width * img.height))


def test_importing_charts_leaves_pillow_out() -> None:
    code = "import sys, bot.charts; print('PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_columns_draw_bars_and_only_a_given_line() -> None:
    bars = _image(charts.columns(["a", "b", "c"], [1, 5, 3], "uses"))
    assert bars.size == (charts.WIDTH, charts.HEIGHT)
    assert _has(bars, charts._BARS)
    assert not _has(bars, charts._LINE)
    both = _image(charts.columns(["a", "b", "c"], [1, 5, 3], "t", line=[10, None, 12]))
    assert _has(both, charts._BARS) and _has(both, charts._LINE)
    # No known point on the line: nothing of it is drawn; nothing at all still draws.
    assert not _has(_image(charts.columns(["a"], [0], "t", line=[None])), charts._LINE)
    assert _image(charts.columns([], [], "empty", width=200, height=100)).size == (200, 100)


def test_rows_grow_with_their_labels() -> None:
    two = _image(charts.rows(["yes", "no"], [3, 1], "Poll"))
    five = _image(charts.rows(list("abcde"), [0, 0, 0, 0, 0], "Poll"))
    assert two.height < five.height
    assert _has(two, charts._BARS)
    assert not _has(five, charts._BARS)
