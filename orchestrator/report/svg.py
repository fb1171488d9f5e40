"""Plots as inline SVG, written here: the report needs no plotting library and no network.

Every plot is an ``<svg class="plot">`` with a title for screen readers and
``<title>`` tooltips on its marks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
_W, _H = 720, 360
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 160, 36, 48


@dataclass(frozen=True)
class Interval:
    group: str
    """x category (a task)."""
    series: str
    """colour and legend entry (an agent)."""
    value: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False


@dataclass(frozen=True)
class Span:
    lane: str
    start: float
    end: float
    label: str


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    step = 10 ** math.floor(math.log10((hi - lo) / count or 1))
    for mult in (1, 2, 2.5, 5, 10):
        if (hi - lo) / (step * mult) <= count:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


class _Canvas:
    def __init__(self, title: str, x_label: str, y_label: str, y_range: tuple[float, float]) -> None:
        self.parts: list[str] = []
        self.title = title
        lo, hi = y_range
        pad = (hi - lo) * 0.06 or 0.5
        self.y_lo, self.y_hi = lo - pad, hi + pad
        self.x_label, self.y_label = x_label, y_label

    def y(self, v: float) -> float:
        return _TOP + (self.y_hi - v) / (self.y_hi - self.y_lo) * (_H - _TOP - _BOTTOM)

    def add(self, part: str) -> None:
        self.parts.append(part)

    def y_axis(self) -> None:
        for t in _ticks(self.y_lo, self.y_hi):
            y = self.y(t)
            self.add(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
            self.add(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        mid = (_TOP + _H - _BOTTOM) / 2
        self.add(
            f'<text x="14" y="{mid:.1f}" transform="rotate(-90 14 {mid:.1f})" '
            f'text-anchor="middle">{escape(self.y_label)}</text>'
        )
        self.add(
            f'<text x="{(_LEFT + _W - _RIGHT) / 2:.1f}" y="{_H - 8}" text-anchor="middle">'
            f"{escape(self.x_label)}</text>"
        )

    def legend(self, names: Sequence[str], dashed: Sequence[bool] = ()) -> None:
        for i, name in enumerate(names):
            y = _TOP + 8 + i * 18
            dash = ' stroke-dasharray="5 3"' if i < len(dashed) and dashed[i] else ""
            self.add(
                f'<line x1="{_W - _RIGHT + 12}" x2="{_W - _RIGHT + 32}" y1="{y}" y2="{y}" '
                f'stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="3"{dash}/>'
            )
            self.add(f'<text x="{_W - _RIGHT + 38}" y="{y + 4}">{escape(name)}</text>')

    def render(self) -> str:
        return (
            f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" '
            f'width="{_W}" height="{_H}" role="img" aria-label="{escape(self.title)}">'
            f"<title>{escape(self.title)}</title>"
            f'<text x="{_LEFT}" y="20" class="plot-title">{escape(self.title)}</text>'
            + "".join(self.parts)
            + "</svg>"
        )


def interval_plot(title: str, y_label: str, items: Sequence[Interval], marks: Sequence[float] = ()) -> str:
    """Points with interval bars, grouped on the x axis, one colour per series."""
    groups = list(dict.fromkeys(i.group for i in items))
    series = list(dict.fromkeys(i.series for i in items))
    values = [v for i in items for v in (i.value, i.low, i.high) if v is not None] + list(marks)
    canvas = _Canvas(title, "task", y_label, (min(values, default=0), max(values, default=1)))
    canvas.y_axis()
    for m in marks:
        y = canvas.y(m)
        canvas.add(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="mark"/>')
    slot = (_W - _LEFT - _RIGHT) / max(len(groups), 1)
    for gi, group in enumerate(groups):
        cx = _LEFT + slot * (gi + 0.5)
        canvas.add(f'<text x="{cx:.1f}" y="{_H - _BOTTOM + 18}" text-anchor="middle">{escape(group)}</text>')
        for item in (i for i in items if i.group == group):
            si = series.index(item.series)
            x = cx + (si - (len(series) - 1) / 2) * min(24, slot / (len(series) + 1))
            color = PALETTE[si % len(PALETTE)]
            tip = f"{item.series} on {group}: {item.value:.3f}"
            if item.low is not None and item.high is not None:
                tip += f" [{item.low:.3f}, {item.high:.3f}]"
                y1, y2 = canvas.y(item.low), canvas.y(item.high)
                canvas.add(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{color}" '
                    'stroke-width="2"/>'
                )
                for yy in (y1, y2):
                    canvas.add(
                        f'<line x1="{x - 5:.1f}" x2="{x + 5:.1f}" y1="{yy:.1f}" y2="{yy:.1f}" '
                        f'stroke="{color}" stroke-width="2"/>'
                    )
            canvas.add(
                f'<circle cx="{x:.1f}" cy="{canvas.y(item.value):.1f}" r="5" fill="{color}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    canvas.legend(series)
    return canvas.render()


def line_plot(
    title: str, x_label: str, y_label: str, series: Sequence[Series], hline: float | None = None
) -> str:
    """Lines over a numeric x axis; ``hline`` marks a level (the target loss)."""
    xs = [p[0] for s in series for p in s.points]
    ys = [p[1] for s in series for p in s.points] + ([hline] if hline is not None else [])
    canvas = _Canvas(title, x_label, y_label, (min(ys, default=0), max(ys, default=1)))
    canvas.y_axis()
    x_lo, x_hi = 0.0, max(xs, default=1.0) or 1.0

    def x(v: float) -> float:
        return _LEFT + (v - x_lo) / (x_hi - x_lo) * (_W - _LEFT - _RIGHT)

    for t in _ticks(x_lo, x_hi):
        canvas.add(f'<text x="{x(t):.1f}" y="{_H - _BOTTOM + 18}" text-anchor="middle">{_fmt(t)}</text>')
    if hline is not None:
        y = canvas.y(hline)
        canvas.add(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="mark"/>')
    for i, s in enumerate(series):
        if not s.points:
            continue
        path = " ".join(f"{x(px):.1f},{canvas.y(py):.1f}" for px, py in s.points)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        canvas.add(
            f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="2"{dash} '
            f'points="{path}"><title>{escape(s.name)}</title></polyline>'
        )
    canvas.legend([s.name for s in series], [s.dashed for s in series])
    return canvas.render()


def timeline(title: str, spans: Sequence[Span]) -> str:
    """Horizontal bars on a seconds axis, one lane per kind of activity."""
    lanes = list(dict.fromkeys(s.lane for s in spans))
    end = max((s.end for s in spans), default=1.0) or 1.0
    height = _TOP + 30 * len(lanes) + _BOTTOM
    width_px = _W - 140 - 24

    def x(v: float) -> float:
        return 140 + max(0.0, v) / end * width_px

    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" width="{_W}" '
        f'height="{height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="8" y="20" class="plot-title">{escape(title)}</text>',
    ]
    for t in _ticks(0, end):
        parts.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{_TOP}" y2="{height - _BOTTOM}" class="grid"/>'
            f'<text x="{x(t):.1f}" y="{height - _BOTTOM + 16}" text-anchor="middle">{_fmt(t)}</text>'
        )
    parts.append(
        f'<text x="{140 + width_px / 2:.1f}" y="{height - 10}" text-anchor="middle">'
        "seconds since the attempt was created</text>"
    )
    for li, lane in enumerate(lanes):
        y = _TOP + 30 * li
        parts.append(f'<text x="132" y="{y + 18}" text-anchor="end">{escape(lane)}</text>')
        color = PALETTE[li % len(PALETTE)]
        for s in (s for s in spans if s.lane == lane):
            w = max(x(s.end) - x(s.start), 2.0)
            parts.append(
                f'<rect x="{x(s.start):.1f}" y="{y + 4}" width="{w:.1f}" height="20" fill="{color}" '
                f'opacity="0.8"><title>{escape(s.label)}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)
