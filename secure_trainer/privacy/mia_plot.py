"""The membership-inference ROC curve as a PNG, drawn with Pillow (no plotting library).

Writes only the file it is given; the picture carries numbers only (no names or captions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 480
MARGIN = 56


def _xy(fpr: float, tpr: float) -> tuple[float, float]:
    span = SIZE - 2 * MARGIN
    return MARGIN + fpr * span, SIZE - MARGIN - tpr * span


def draw_roc(points: Sequence[tuple[float, float]], path: Path, *, title: str) -> Path:
    """Draw the (FPR, TPR) polyline, the chance diagonal, axes and ticks; save PNG at `path`."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([_xy(0, 1), _xy(1, 0)], outline="black")
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x, y0 = _xy(tick, 0)
        draw.line([(x, y0), (x, y0 + 5)], fill="black")
        draw.text((x - 10, y0 + 8), f"{tick:.2f}", fill="black")
        x0, y = _xy(0, tick)
        draw.line([(x0 - 5, y), (x0, y)], fill="black")
        draw.text((x0 - 38, y - 6), f"{tick:.2f}", fill="black")
    draw.line([_xy(0, 0), _xy(1, 1)], fill=(160, 160, 160), width=1)
    draw.line([_xy(f, t) for f, t in points], fill=(200, 30, 30), width=3)
    draw.text((MARGIN, 18), title, fill="black")
    draw.text((SIZE // 2 - 60, SIZE - 24), "false positive rate", fill="black")
    draw.text((6, MARGIN - 20), "true positive rate", fill="black")
    image.save(path, format="PNG")
    return path
