"""SVG drawing for `firth report` (pipelines/ops/report.py): line charts on round ticks, and a
scatter plot whose labels never overlap. numpy only, no plotting library.
"""
from __future__ import annotations

import html
import math

import numpy as np

COLOURS = ["#1f6feb", "#d9480f", "#2f9e44", "#862e9c"]
FONT_PX = 11  # svg text{font:11px ...} in the report's CSS
CHAR_WIDTH = 0.62 * FONT_PX  # a generous average advance of a lowercase/digit glyph in system-ui at 11 px
LABEL_GAP = 1.0  # pixels kept free between two labels' boxes
DOT_RADIUS = 2.5


def nice_ticks(low: float, high: float, max_ticks: int = 6, *, integer: bool = False) -> list[float]:
    """Round tick values covering [low, high]: multiples of a step of 1, 2 or 5 × 10^k, at most
    `max_ticks` of them (integer: a step of at least 1). The first tick is <= low, the last >= high."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"nice_ticks: the range must be finite, got [{low}, {high}]")
    if high < low:
        low, high = high, low
    if high - low < 1e-12 * max(1.0, abs(low), abs(high)):  # one value: a unit-sized range around it
        low, high = (low - 1, high + 1) if integer or low == 0 else (low - abs(low) / 2, high + abs(high) / 2)
    raw = (high - low) / max(max_ticks - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10, 20):
        step = multiple * magnitude
        if integer:
            step = max(step, 1.0)
        first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
        if last - first + 1 <= max_ticks:
            break
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [round(k * step, decimals) + 0.0 for k in range(first, last + 1)]  # + 0.0: no "-0"


def format_tick(value: float) -> str:
    """0.05 -> "0.05", 0.1 -> "0.1", 150.0 -> "150" (ticks from nice_ticks are already rounded)."""
    return np.format_float_positional(value, trim="-", precision=10)


def line_chart(svg_id: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str,
               *, integer_x: bool = True) -> str:
    """One line per series of (x, y) points, on round ticks; the first series is drawn on top."""
    width, height, left, bottom, top, right = 640, 300, 66, 40, 12, 16
    xs = np.array([x for points in series.values() for x, _ in points], dtype=float)
    ys = np.array([y for points in series.values() for _, y in points], dtype=float)
    x_ticks, y_ticks = nice_ticks(xs.min(), xs.max(), 9, integer=integer_x), nice_ticks(ys.min(), ys.max(), 6)
    (x0, x1), (y0, y1) = (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1])

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                top + (y1 - y) / (y1 - y0) * (height - top - bottom))

    parts = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#57606a"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#57606a"/>',
             f'<text x="{(width + left) / 2}" y="{height - 6}" text-anchor="middle">{_e(x_label)}</text>',
             (f'<text x="12" y="{(height - bottom + top) / 2}" transform="rotate(-90 12 {(height - bottom + top) / 2})" '
              f'text-anchor="middle">{_e(y_label)}</text>')]
    for value in y_ticks:
        _, y = px(x0, value)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eaeef2"/>'
                     f'<text class=y-tick x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{format_tick(value)}</text>')
    for value in x_ticks:
        x, _ = px(value, y0)
        parts.append(f'<text class=x-tick x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                     f'{format_tick(value)}</text>')
    for k, (name, points) in reversed(list(enumerate(series.items()))):  # the first series drawn last, on top
        colour = COLOURS[k % len(COLOURS)]
        coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in (px(a, b) for a, b in points))
        dash = ' stroke-dasharray="6 4"' if k else ""
        parts.append(f'<polyline class=series data-name="{_e(name)}" fill="none" stroke="{colour}" stroke-width="2"'
                     f'{dash} points="{coordinates}"/>')
        if len(points) == 1:  # a line of one point is invisible: a dot
            x, y = px(*points[0])
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        parts.append(f'<text x="{width - right - 4}" y="{top + 14 + 16 * k}" text-anchor="end" fill="{colour}">'
                     f'{_e(name)}</text>')
    return f'<svg id={svg_id} xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{"".join(parts)}</svg>'


def label_box(x: float, y: float, text: str, anchor: str) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) an SVG <text x y text-anchor> of `text` covers, by the CHAR_WIDTH estimate
    (y is the baseline; descenders included)."""
    width = CHAR_WIDTH * len(text)
    x0 = x - width if anchor == "end" else x - width / 2 if anchor == "middle" else x
    return x0, y - FONT_PX, x0 + width, y + 0.3 * FONT_PX


def boxes_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# Where a label may sit around its point (dx, dy, text-anchor), tried in this order.
_PLACES = ((4, -4, "start"), (4, 12, "start"), (-4, -4, "end"), (-4, 12, "end"), (0, -6, "middle"), (0, 16, "middle"))


def place_labels(xy: np.ndarray, texts: list[str], width: float, height: float,
                 dots: np.ndarray | None = None) -> list[tuple[int, float, float, str]]:
    """Greedy placement, in the given order (most important first): each label of point xy[i] takes
    the first of _PLACES around it where its box stays inside the canvas, covers none of `dots`
    (all the points drawn, (m, 2)) and comes no closer than LABEL_GAP to a label placed before; a
    label with no such place is left out. Returns (point index, x, y, text-anchor) per label placed."""
    placed: list[tuple[int, float, float, str]] = []
    boxes: list[tuple[float, float, float, float]] = []
    dots = np.empty((0, 2)) if dots is None else np.asarray(dots, dtype=float)
    for i, text in enumerate(texts):
        for dx, dy, anchor in _PLACES:
            x, y = round(float(xy[i, 0]) + dx, 1), round(float(xy[i, 1]) + dy, 1)  # as written to the SVG
            box = label_box(x, y, text, anchor)
            inside = box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height
            padded = (box[0] - LABEL_GAP, box[1] - LABEL_GAP, box[2] + LABEL_GAP, box[3] + LABEL_GAP)
            covers_dot = ((dots[:, 0] + DOT_RADIUS > box[0]) & (dots[:, 0] - DOT_RADIUS < box[2])
                          & (dots[:, 1] + DOT_RADIUS > box[1]) & (dots[:, 1] - DOT_RADIUS < box[3])).any()
            if inside and not covers_dot and not any(boxes_overlap(padded, other) for other in boxes):
                placed.append((i, x, y, anchor))
                boxes.append(box)
                break
    return placed


def scatter(svg_id: str, points: np.ndarray, texts: list[str], labelled: int) -> tuple[str, int]:
    """(n, 2) points scaled into the canvas, the first `labelled` of `texts` as labels where they fit;
    returns the SVG and how many labels it shows."""
    width, height, pad = 1000, 560, 24
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    xy = pad + (points - low) / span * np.array([width - 2 * pad, height - 2 * pad])  # (n, 2) pixels
    xy[:, 1] = height - xy[:, 1]  # SVG's y grows downwards
    xy = xy.round(1)  # as written
    labels = place_labels(xy[:labelled], texts[:labelled], width, height, dots=xy)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{DOT_RADIUS}" fill="{COLOURS[0]}"/>' for x, y in xy)
    words = "".join(f'<text class=label x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{_e(texts[i])}</text>'
                    for i, x, y, anchor in labels)
    svg = (f'<svg id={svg_id} xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'style="border:1px solid #d0d7de">{dots}{words}</svg>')
    return svg, len(labels)


def _e(text) -> str:
    return html.escape(str(text), quote=True)
