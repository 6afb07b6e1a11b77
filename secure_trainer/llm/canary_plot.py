"""The canary exposure plot as a PNG, drawn with Pillow in the style of privacy/mia_plot.py.

One column per repetition count; a grey dot per canary for the base model and a red dot for
the adapter; the dashed line is the largest measurable exposure. Numbers only: never a
secret, pseudonym or path. Writes only the file it is given.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from secure_trainer.llm.canary_report import CanaryReport
from secure_trainer.privacy.mia_plot import MARGIN, SIZE


def draw_exposure(report: CanaryReport, path: Path) -> Path:
    """Draw exposures (y, bits) by repetition count (x); save PNG at `path`."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    span = SIZE - 2 * MARGIN
    top = max(report.max_exposure, 1.0)
    reps = sorted({c.repetitions for c in report.adapter})

    def xy(column: int, bits: float, shift: float) -> tuple[float, float]:
        x = MARGIN + (column + 0.5) / len(reps) * span + shift
        return x, SIZE - MARGIN - min(max(bits, 0.0), top) / top * span

    draw.rectangle([(MARGIN, MARGIN), (SIZE - MARGIN, SIZE - MARGIN)], outline="black")
    for tick in range(0, int(top) + 1, max(1, int(top) // 5)):
        _, y = xy(0, float(tick), 0)
        draw.line([(MARGIN - 5, y), (MARGIN, y)], fill="black")
        draw.text((MARGIN - 26, y - 6), str(tick), fill="black")
    _, cap = xy(0, top, 0)
    for dash in range(MARGIN, SIZE - MARGIN, 8):
        draw.line([(dash, cap), (dash + 4, cap)], fill=(120, 120, 120))
    for column, count in enumerate(reps):
        x, _ = xy(column, 0, 0)
        draw.text((x - 12, SIZE - MARGIN + 8), f"x{count}", fill="black")
        for series, colour, shift in ((report.base, (150, 150, 150), -8.0),
                                      (report.adapter, (200, 30, 30), 8.0)):
            for item in series:
                if item.repetitions == count:
                    cx, cy = xy(column, item.exposure, shift)
                    draw.ellipse([(cx - 4, cy - 4), (cx + 4, cy + 4)], fill=colour)
    draw.text((MARGIN, 18), "canary exposure (bits): base grey, adapter red", fill="black")
    draw.text((SIZE // 2 - 50, SIZE - 24), "repetitions", fill="black")
    image.save(path, format="PNG")
    return path
