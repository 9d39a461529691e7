"""The learning-rate range test's loss curve as a PNG, drawn with Pillow: loss against lr on a log axis."""

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

SIZE = (720, 440)  # width, height in pixels
MARGIN = (70, 30, 20, 50)  # left, top, right, bottom: room for the axis labels


def draw(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float], suggested: float) -> Image.Image:
    """The raw loss (grey), the smoothed loss (blue) and the suggested lr (a red line), on a log10 lr axis."""
    image = Image.new("RGB", SIZE, "white")
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN[0], MARGIN[1], SIZE[0] - MARGIN[2], SIZE[1] - MARGIN[3]
    low_x, high_x = math.log10(lrs[0]), math.log10(lrs[-1])
    finite = [loss for loss in losses if math.isfinite(loss)]
    low_y = min(finite)
    high_y = min(max(finite), smoothed[0] + 2 * (smoothed[0] - low_y) + 1e-12)  # the diverging tail is cut off

    def point(lr: float, loss: float) -> tuple[float, float]:
        x = left + (math.log10(lr) - low_x) / (high_x - low_x or 1) * (right - left)
        y = bottom - (min(max(loss, low_y), high_y) - low_y) / (high_y - low_y or 1) * (bottom - top)
        return x, y

    pen.rectangle((left, top, right, bottom), outline="black")
    for exponent in range(math.ceil(low_x), math.floor(high_x) + 1):  # a tick per decade
        x = point(10.0**exponent, low_y)[0]
        pen.line((x, bottom, x, bottom + 5), fill="black")
        pen.text((x - 12, bottom + 8), f"1e{exponent}", fill="black")
    for value in (low_y, (low_y + high_y) / 2, high_y):
        y = point(lrs[0], value)[1]
        pen.text((5, y - 6), f"{value:.3g}", fill="black")
    pen.line([point(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss)], fill="#aaaaaa")
    pen.line([point(lr, loss) for lr, loss in zip(lrs, smoothed, strict=True)], fill="#1f5fbf", width=2)
    x = point(suggested, low_y)[0]
    pen.line((x, top, x, bottom), fill="#d02020", width=1)
    pen.text((left + 5, 8), f"learning-rate range test: suggested lr {suggested:.3g} (red)", fill="black")
    pen.text(((left + right) / 2 - 40, SIZE[1] - 20), "learning rate (log)", fill="black")
    return image
