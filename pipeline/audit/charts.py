"""Bar charts as SVG whose words are text: searchable, selectable, read by screen readers, no fonts embedded.

Each chart is an `<svg role="img">` with a `<title>` and a `<desc>` that says
the numbers in words, and a `<text>` element for every label and value.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

BAR_COLOUR = "#3b6ea5"
WIDTH = 560
ROW = 22
LABEL_WIDTH = 220


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], unit: str) -> str:
    """Horizontal bars, one per label, largest scale to the widest bar; an empty chart says so."""
    escape = html.escape
    height = 36 + ROW * max(1, len(labels))
    described = "; ".join(f"{label}: {value:g} {unit}" for label, value in zip(labels, values, strict=True))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(described or 'nothing to show')}</desc>",
        f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    if not labels:
        parts.append('<text x="0" y="46" font-size="12" fill="#666">nothing to show</text>')
    top = max(values) if values else 0
    span = WIDTH - LABEL_WIDTH - 60
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 30 + index * ROW
        length = 0 if top <= 0 else max(1, round(span * value / top))
        short = label if len(label) <= 34 else label[:33] + "…"
        parts += [
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 14}" font-size="12" text-anchor="end">{escape(short)}</text>',
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{length}" height="{ROW - 8}" fill="{BAR_COLOUR}"/>',
            f'<text x="{LABEL_WIDTH + length + 4}" y="{y + 14}" font-size="12">{value:g}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def histogram(title: str, values: Sequence[float], bins: int = 10) -> str:
    """Values in [0, 1] in `bins` equal bins, as a bar chart of counts."""
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int(value * bins)))] += 1
    labels = [f"{i / bins:.1f}-{(i + 1) / bins:.1f}" for i in range(bins)]
    return bar_chart(title, labels, counts, "findings")
