"""The digest's chart as a PNG, in pure Python (zlib + struct; no matplotlib).

One chart, drawn once a week: stacked bars of unresolved findings by severity for the last
8 weeks, with a y grid, totals, week dates and a legend. A 5x7 bitmap font covers the
labels (digits, A-Z and a little punctuation; lower case is drawn as upper case). Output is
deterministic for the same input, an 8-bit RGB PNG of about 10 kB.

Why not matplotlib: it would add ~40 MB (numpy, pillow, fonttools...) and a second of
import time to every worker for one bar chart; this file is the whole dependency.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping, Sequence

from checks.model import SEVERITY_ORDER as SEVERITIES

COLORS: dict[str, tuple[int, int, int]] = {
    "critical": (0xC6, 0x28, 0x28),
    "high": (0xEF, 0x6C, 0x00),
    "medium": (0xF9, 0xA8, 0x25),
    "low": (0x1E, 0x88, 0xE5),
}
WHITE = (0xFF, 0xFF, 0xFF)
INK = (0x21, 0x21, 0x21)
MUTED = (0x75, 0x75, 0x75)
GRID = (0xE6, 0xE6, 0xE6)

# 5x7 glyphs, rows top to bottom.
_FONT_ROWS = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "-": "..... ..... ..... .###. ..... ..... .....",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    "/": "..... ....# ...#. ..#.. .#... #.... .....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    " ": "..... ..... ..... ..... ..... ..... .....",
}
FONT: dict[str, tuple[tuple[int, int], ...]] = {
    char: tuple((x, y) for y, row in enumerate(rows.split()) for x, bit in enumerate(row) if bit == "#")
    for char, rows in _FONT_ROWS.items()
}
GLYPH_W, GLYPH_H = 5, 7


class Canvas:
    """An RGB raster with the three operations a bar chart needs."""

    def __init__(self, width: int, height: int, background: tuple[int, int, int] = WHITE):
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        """Fill [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        if x0 >= x1 or y0 >= y1:
            return
        run = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start:start + len(run)] = run

    def text(self, x: int, y: int, text: str, color: tuple[int, int, int], scale: int = 2) -> int:
        """Draw `text` with its top-left corner at (x, y); return the x after it."""
        for char in text.upper():
            for gx, gy in FONT.get(char, ()):
                self.rect(x + gx * scale, y + gy * scale, x + (gx + 1) * scale, y + (gy + 1) * scale, color)
            x += (GLYPH_W + 1) * scale
        return x

    def png(self) -> bytes:
        return encode_png(self.width, self.height, self.pixels)


def text_width(text: str, scale: int = 2) -> int:
    return max(0, len(text) * (GLYPH_W + 1) * scale - scale)


def encode_png(width: int, height: int, rgb: bytes | bytearray) -> bytes:
    """8-bit truecolor PNG (no filter on each row) from packed RGB rows."""
    if len(rgb) != width * height * 3:
        raise ValueError("pixel buffer does not match the size")
    stride = width * 3
    raw = b"".join(b"\x00" + bytes(rgb[y * stride:(y + 1) * stride]) for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def nice_step(maximum: int, ticks: int = 5) -> int:
    """A 1/2/5 x 10^n step giving about `ticks` grid lines up to `maximum`."""
    if maximum <= ticks:
        return 1
    raw = maximum / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return int(factor * power)
    return int(10 * power)


def stacked_bar_png(
    labels: Sequence[str],
    series: Sequence[Mapping[str, int]],
    *,
    title: str,
    width: int = 960,
    height: int = 480,
) -> bytes:
    """Stacked bars (one per label, severities bottom-up from critical) with totals on top."""
    canvas = Canvas(width, height)
    left, right, top, bottom = 80, 230, 64, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(point.get(s, 0) for s in SEVERITIES) for point in series]
    step = nice_step(max(totals, default=0))
    y_max = max(step, math.ceil(max(totals, default=0) / step) * step)

    def y_of(value: float) -> int:
        return top + plot_h - round(value / y_max * plot_h)

    canvas.text(left, 20, title, INK, scale=3)
    for tick in range(0, y_max + 1, step):
        y = y_of(tick)
        canvas.rect(left, y, left + plot_w, y + 1, GRID)
        label = str(tick)
        canvas.text(left - 12 - text_width(label), y - GLYPH_H, label, MUTED)
    canvas.rect(left, top + plot_h, left + plot_w, top + plot_h + 2, INK)

    slot = plot_w / max(1, len(series))
    bar = max(4, int(slot * 0.6))
    for i, (label, point) in enumerate(zip(labels, series, strict=True)):
        x0 = left + round(i * slot + (slot - bar) / 2)
        base = 0
        for severity in SEVERITIES:
            value = point.get(severity, 0)
            if value:
                canvas.rect(x0, y_of(base + value), x0 + bar, y_of(base), COLORS[severity])
                base += value
        total = str(totals[i])
        canvas.text(x0 + (bar - text_width(total)) // 2, y_of(base) - 2 * GLYPH_H - 6, total, INK)
        canvas.text(x0 + (bar - text_width(label)) // 2, top + plot_h + 14, label, MUTED)

    legend_x, legend_y = width - right + 28, top + 8
    latest = series[-1] if series else {}
    for severity in SEVERITIES:
        canvas.rect(legend_x, legend_y, legend_x + 18, legend_y + 18, COLORS[severity])
        canvas.text(legend_x + 28, legend_y + 2, f"{severity} {latest.get(severity, 0)}", INK)
        legend_y += 34
    return canvas.png()


def history_chart_png(history: Sequence, *, width: int = 960, height: int = 480) -> bytes:
    """The digest chart from `Digest.history` (points with `.at` and `.counts`)."""
    labels = [point.at.strftime("%m-%d") for point in history]
    return stacked_bar_png(
        labels,
        [point.counts for point in history],
        title=f"Unresolved IAM findings, last {len(history)} weeks",
        width=width,
        height=height,
    )
