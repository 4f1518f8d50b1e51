"""Charts drawn on the server as SVG: no script, no library, readable without JavaScript and in every
language (labels come formatted from the caller). One kind: bars over time, stacked by series."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#a0aec0")
WIDTH, HEIGHT = 640, 180
LEFT, BOTTOM, TOP = 64, 22, 8  # room for the axis labels


@dataclass(slots=True, frozen=True)
class Series:
    label: str
    values: Sequence[float]  # one per bucket


def stacked_bars(
    title: str,
    buckets: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str],
    empty: str,
) -> Markup:
    """A stacked bar per bucket; `buckets` are the x labels, `fmt` formats a value for the axis and tips."""
    stacks = [sum(s.values[i] for s in series) for i in range(len(buckets))]
    peak = max(stacks, default=0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    base_y = TOP + plot_h
    parts.append(f'<line x1="{LEFT}" y1="{base_y}" x2="{WIDTH - 4}" y2="{base_y}" class="axis"/>')
    if not buckets or peak <= 0:
        parts.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" class="empty">{escape(empty)}</text>'
        )
        return Markup("".join(parts) + "</svg>")
    parts.append(
        f'<text x="{LEFT - 6}" y="{TOP + 10}" class="tick" text-anchor="end">{escape(fmt(peak))}</text>'
    )
    parts.append(f'<text x="{LEFT - 6}" y="{base_y}" class="tick" text-anchor="end">{escape(fmt(0))}</text>')
    slot = plot_w / len(buckets)
    bar = max(1.0, slot * 0.75)
    for i, label in enumerate(buckets):
        x, y = LEFT + i * slot + (slot - bar) / 2, float(base_y)
        for n, s in enumerate(series):
            value = s.values[i]
            if value <= 0:
                continue
            h = value / peak * plot_h
            y -= h
            colour = PALETTE[n % len(PALETTE)]
            tip = escape(f"{label} · {s.label}: {fmt(value)}")
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{tip}</title></rect>"
            )
    step = max(1, len(buckets) // 6)
    for i in range(0, len(buckets), step):
        x = LEFT + i * slot + slot / 2
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 6}" class="tick" text-anchor="middle">'
            f"{escape(buckets[i])}</text>"
        )
    return Markup("".join(parts) + "</svg>")


def legend(series: Sequence[Series]) -> Markup:
    items = "".join(
        f'<li><span class="swatch" style="background:{PALETTE[n % len(PALETTE)]}"></span>'
        f"{escape(s.label)}</li>"
        for n, s in enumerate(series)
    )
    return Markup(f'<ul class="legend">{items}</ul>')
