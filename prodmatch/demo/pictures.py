"""Product pictures for the demo: each product family drawn from simple shapes in its colours and pattern.

`_Painter` draws a product photo as a listing needs it (size, background, angle, badge, watermark), so the
same product looks alike in the shop and the competitor's listing and a sibling in another colour looks
different. Called by `demo.catalogues` when it writes the image files; the vocabulary comes from `demo.world`.
"""

from __future__ import annotations

import functools
import math

from PIL import Image, ImageDraw, ImageFont

from prodmatch.demo.world import _WATERMARK, _Colour, _Family, _Photo, _Product

# --- images --------------------------------------------------------------------------------------------------


class _Painter:
    """Draws each product once (per model and colour) and photographs it for each listing."""

    def __init__(self, image_size: int) -> None:
        self.size = image_size
        self._last: tuple[tuple[int, str], Image.Image] | None = None

    def photo(self, product: _Product, photo: _Photo) -> Image.Image:
        size = self.size
        canvas = Image.new("RGB", (size, size), photo.background)
        item = self._product(product.family, product.colour)
        centre = (size / 2 + photo.shift[0] * size, size / 2 + photo.shift[1] * size)
        if photo.shadow:
            shade = tuple(max(0, c - 22) for c in photo.background)
            x, y, half = centre[0], centre[1] + 0.41 * size * photo.scale, 0.35 * size * photo.scale
            ImageDraw.Draw(canvas).ellipse([x - half, y - half / 7, x + half, y + half / 7], fill=shade)
        # Scale, rotation, mirroring and shift in one resampling: each output pixel looks up its source.
        turn = math.radians(photo.angle)
        cos, sin = math.cos(turn) / photo.scale, math.sin(turn) / photo.scale
        flip = -1 if photo.mirror else 1
        a, b, d, e = flip * cos, flip * sin, -sin, cos
        matrix = (
            a,
            b,
            size / 2 - a * centre[0] - b * centre[1],
            d,
            e,
            size / 2 - d * centre[0] - e * centre[1],
        )
        item = item.transform((size, size), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)
        canvas.paste(item, (0, 0), item)
        if photo.badge:
            _badge(canvas, photo.badge)
        if photo.watermark:
            _watermark(canvas)
        return canvas

    def _product(self, family: _Family, colour: _Colour) -> Image.Image:
        key = (family.index, colour.key)
        if self._last is None or self._last[0] != key:  # listings come grouped by model and colour
            self._last = (key, self._draw(family, colour))
        return self._last[1]

    def _draw(self, family: _Family, colour: _Colour) -> Image.Image:
        scale = 2  # drawn at twice the size and scaled down, for smooth edges
        canvas = _Canvas(self.size * scale, family, colour)
        _DRAWINGS[family.category.key](canvas)
        canvas.finish()
        return canvas.image.reduce(scale)


def _badge(image: Image.Image, text: str) -> None:
    size = image.width
    draw = ImageDraw.Draw(image)
    radius = size * 0.12
    centre = (size - radius * 1.2, radius * 1.2)
    draw.ellipse(
        [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius], fill=(220, 30, 40)
    )
    draw.text(centre, text, fill=(255, 255, 255), font=_font(max(8, round(radius * 0.7))), anchor="mm")


def _watermark(image: Image.Image) -> None:
    size = image.width
    ImageDraw.Draw(image, "RGBA").text(
        (size / 2, size * 0.9),
        _WATERMARK,
        fill=(90, 90, 90, 110),
        font=_font(max(8, size // 14)),
        anchor="mm",
    )


@functools.lru_cache(maxsize=64)
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=pixels)  # Pillow's bundled font: the same on every machine
    except (ImportError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _darker(rgb: tuple[int, int, int], factor: float = 0.55) -> tuple[int, int, int]:
    return tuple(int(c * factor) for c in rgb)


def _contrast(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (20, 20, 24) if luminance > 150 else (250, 250, 250)


class _Canvas:
    """A transparent square in unit coordinates; `body_*` shapes get the product's colour and pattern."""

    def __init__(self, size: int, family: _Family, colour: _Colour) -> None:
        self.size = size
        self.colour = colour.rgb
        self.second = family.secondary.rgb if family.secondary != colour else _darker(colour.rgb, 0.7)
        self.pattern = family.pattern
        self.brand = family.brand.upper()
        self.outline = _darker(colour.rgb) if colour.key != "black" else (90, 90, 96)
        self.width = max(1, size // 110)
        self.image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)
        self._mask = Image.new("L", (size, size), 0)
        self._mask_draw = ImageDraw.Draw(self._mask)
        self._outlines: list[tuple[str, object]] = []
        self._labels: list[tuple[float, float, float]] = []

    def xy(self, points) -> list[tuple[float, float]]:
        return [(x * self.size, y * self.size) for x, y in points]

    def box(self, box) -> list[float]:
        return [v * self.size for v in box]

    # Body shapes: filled with the product's colour and pattern by fill().
    def body_polygon(self, points) -> None:
        self._mask_draw.polygon(self.xy(points), fill=255)
        self._outlines.append(("polygon", self.xy(points)))

    def body_ellipse(self, box) -> None:
        self._mask_draw.ellipse(self.box(box), fill=255)
        self._outlines.append(("ellipse", self.box(box)))

    def body_rect(self, box, radius: float = 0.0) -> None:
        self._mask_draw.rounded_rectangle(self.box(box), radius=radius * self.size, fill=255)
        self._outlines.append(("rect", (self.box(box), radius * self.size)))

    def body_pieslice(self, box, start: float, end: float) -> None:
        self._mask_draw.pieslice(self.box(box), start, end, fill=255)
        self._outlines.append(("pieslice", (self.box(box), start, end)))

    def body_arc(self, box, start: float, end: float, width: float) -> None:
        self._mask_draw.arc(self.box(box), start, end, fill=255, width=round(width * self.size))

    def fill(self) -> None:
        self.image.paste(_pattern(self.size, self.colour, self.second, self.pattern), (0, 0), self._mask)
        for kind, shape in self._outlines:
            if kind == "polygon":
                self.draw.polygon(shape, outline=self.outline, width=self.width)
            elif kind == "ellipse":
                self.draw.ellipse(shape, outline=self.outline, width=self.width)
            elif kind == "rect":
                self.draw.rounded_rectangle(shape[0], radius=shape[1], outline=self.outline, width=self.width)
            else:
                self.draw.pieslice(shape[0], shape[1], shape[2], outline=self.outline, width=self.width)

    # Details, drawn over the body.
    def polygon(self, points, fill) -> None:
        self.draw.polygon(self.xy(points), fill=fill, outline=self.outline, width=self.width)

    def ellipse(self, box, fill, outline: bool = True) -> None:
        self.draw.ellipse(
            self.box(box), fill=fill, outline=self.outline if outline else None, width=self.width
        )

    def rect(self, box, fill, radius: float = 0.0) -> None:
        self.draw.rounded_rectangle(
            self.box(box), radius=radius * self.size, fill=fill, outline=self.outline, width=self.width
        )

    def line(self, points, fill, width: float) -> None:
        self.draw.line(self.xy(points), fill=fill, width=max(1, round(width * self.size)), joint="curve")

    def arc(self, box, start: float, end: float, fill, width: float) -> None:
        self.draw.arc(self.box(box), start, end, fill=fill, width=max(1, round(width * self.size)))

    def label(self, x: float, y: float, height: float, patch: bool = False) -> None:
        """The brand, written on the product (drawn last, over every detail)."""
        self._labels.append((x, y, height, patch))

    def finish(self) -> None:
        for x, y, height, patch in self._labels:
            pixels = round(height * self.size)
            width = self.draw.textlength(self.brand, font=_font(max(6, pixels)))
            pixels = min(pixels, int(pixels * 0.4 * self.size / max(width, 1)))  # long names: smaller letters
            font = _font(max(6, pixels))
            centre = (x * self.size, y * self.size)
            colour = _contrast(self.colour)
            if patch:
                left, top, right, bottom = self.draw.textbbox(centre, self.brand, font=font, anchor="mm")
                pad = self.size * 0.01
                self.draw.rectangle([left - pad, top - pad, right + pad, bottom + pad], fill=(250, 250, 250))
                colour = (20, 20, 24)
            self.draw.text(centre, self.brand, fill=colour, font=font, anchor="mm")


def _pattern(size: int, colour, second, pattern: str) -> Image.Image:
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    step = size // 10
    if pattern == "stripes":
        for y in range(0, size, step):
            draw.rectangle([0, y, size, y + step // 3], fill=second)
    elif pattern == "vstripes":
        for x in range(0, size, step):
            draw.rectangle([x, 0, x + step // 3, size], fill=second)
    elif pattern == "diagonal":
        for x in range(-size, size, step):
            draw.line([(x, size), (x + size, 0)], fill=second, width=max(1, step // 4))
    elif pattern == "dots":
        r = step // 5
        for row, y in enumerate(range(step // 2, size, step)):
            for x in range(step // 2 + (row % 2) * step // 2, size, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=second)
    elif pattern == "checks":
        for row, y in enumerate(range(0, size, step)):
            for x in range((row % 2) * step, size, 2 * step):
                draw.rectangle([x, y, x + step - 1, y + step - 1], fill=second)
    elif pattern == "two-tone":
        draw.rectangle([0, int(size * 0.62), size, size], fill=second)
    elif pattern == "band":
        draw.rectangle([0, int(size * 0.46), size, int(size * 0.56)], fill=second)
    return image


# One drawing per category, in unit coordinates (y grows downwards).
def _draw_shoes(c: _Canvas) -> None:
    c.body_polygon(
        [(0.10, 0.66), (0.14, 0.46), (0.30, 0.42), (0.44, 0.30), (0.58, 0.30), (0.66, 0.44), (0.86, 0.52)]
        + [(0.92, 0.60), (0.92, 0.66)]
    )
    c.fill()
    c.rect((0.08, 0.64, 0.94, 0.74), fill=(245, 245, 245), radius=0.04)
    c.polygon([(0.30, 0.58), (0.62, 0.46), (0.80, 0.56), (0.62, 0.52)], fill=c.second)
    for i in range(4):
        x = 0.46 + i * 0.045
        c.line([(x, 0.34 + i * 0.03), (x + 0.05, 0.40 + i * 0.03)], fill=(250, 250, 250), width=0.012)
    c.label(0.40, 0.55, 0.055)


def _draw_kettle(c: _Canvas) -> None:
    c.arc((0.56, 0.30, 0.86, 0.74), 270, 90, fill=c.outline, width=0.06)
    c.body_polygon([(0.30, 0.30), (0.66, 0.30), (0.74, 0.80), (0.22, 0.80)])
    c.body_polygon([(0.31, 0.36), (0.14, 0.28), (0.12, 0.33), (0.26, 0.52)])
    c.fill()
    c.ellipse((0.30, 0.24, 0.66, 0.34), fill=c.second)
    c.rect((0.18, 0.80, 0.78, 0.87), fill=(60, 60, 64), radius=0.02)
    c.rect((0.58, 0.42, 0.63, 0.74), fill=(150, 205, 240))
    c.label(0.45, 0.62, 0.06, patch=True)


def _draw_tshirt(c: _Canvas) -> None:
    c.body_polygon(
        [(0.30, 0.20), (0.42, 0.16), (0.58, 0.16), (0.70, 0.20), (0.90, 0.36), (0.81, 0.48), (0.72, 0.41)]
        + [(0.72, 0.86), (0.28, 0.86), (0.28, 0.41), (0.19, 0.48), (0.10, 0.36)]
    )
    c.fill()
    c.arc((0.41, 0.10, 0.59, 0.26), 20, 160, fill=c.outline, width=0.02)
    c.label(0.50, 0.44, 0.07)


def _draw_backpack(c: _Canvas) -> None:
    c.arc((0.38, 0.10, 0.62, 0.30), 180, 360, fill=c.outline, width=0.03)
    c.body_rect((0.24, 0.20, 0.76, 0.88), radius=0.10)
    c.fill()
    c.rect((0.31, 0.56, 0.69, 0.84), fill=c.second, radius=0.05)
    c.line([(0.34, 0.62), (0.66, 0.62)], fill=(40, 40, 40), width=0.01)
    c.line([(0.28, 0.30), (0.28, 0.80)], fill=c.outline, width=0.015)
    c.line([(0.72, 0.30), (0.72, 0.80)], fill=c.outline, width=0.015)
    c.label(0.50, 0.40, 0.06, patch=True)


def _draw_mug(c: _Canvas) -> None:
    c.arc((0.56, 0.38, 0.84, 0.68), 270, 90, fill=c.outline, width=0.06)
    c.body_rect((0.22, 0.28, 0.66, 0.82), radius=0.05)
    c.fill()
    c.ellipse((0.22, 0.24, 0.66, 0.34), fill=_darker(c.colour, 0.4))
    c.label(0.44, 0.58, 0.06, patch=True)


def _draw_headphones(c: _Canvas) -> None:
    c.body_arc((0.20, 0.14, 0.80, 0.80), 180, 360, width=0.07)
    c.body_rect((0.13, 0.44, 0.33, 0.78), radius=0.07)
    c.body_rect((0.67, 0.44, 0.87, 0.78), radius=0.07)
    c.fill()
    c.rect((0.30, 0.48, 0.36, 0.74), fill=c.second, radius=0.02)
    c.rect((0.64, 0.48, 0.70, 0.74), fill=c.second, radius=0.02)
    c.label(0.50, 0.62, 0.05, patch=True)


def _draw_lamp(c: _Canvas) -> None:
    c.line([(0.44, 0.82), (0.34, 0.52), (0.58, 0.34)], fill=(90, 90, 96), width=0.025)
    c.body_polygon([(0.50, 0.20), (0.68, 0.14), (0.86, 0.42), (0.58, 0.52)])
    c.body_ellipse((0.22, 0.80, 0.66, 0.90))
    c.fill()
    c.ellipse((0.66, 0.44, 0.78, 0.54), fill=(255, 236, 140), outline=False)
    c.label(0.44, 0.85, 0.04)


def _draw_jacket(c: _Canvas) -> None:
    c.body_polygon(
        [(0.30, 0.16), (0.42, 0.12), (0.58, 0.12), (0.70, 0.16), (0.86, 0.38), (0.92, 0.80), (0.81, 0.82)]
        + [(0.74, 0.46), (0.74, 0.90), (0.26, 0.90), (0.26, 0.46), (0.19, 0.82), (0.08, 0.80), (0.14, 0.38)]
    )
    c.fill()
    c.arc((0.38, 0.04, 0.62, 0.24), 180, 360, fill=c.outline, width=0.03)
    c.line([(0.50, 0.14), (0.50, 0.90)], fill=c.second, width=0.015)
    c.line([(0.31, 0.68), (0.43, 0.68)], fill=c.outline, width=0.012)
    c.line([(0.57, 0.68), (0.69, 0.68)], fill=c.outline, width=0.012)
    c.label(0.63, 0.30, 0.035)


def _draw_bottle(c: _Canvas) -> None:
    c.body_rect((0.36, 0.24, 0.64, 0.90), radius=0.07)
    c.body_rect((0.42, 0.16, 0.58, 0.28))
    c.fill()
    c.rect((0.41, 0.08, 0.59, 0.17), fill=c.second, radius=0.02)
    c.rect((0.36, 0.48, 0.64, 0.64), fill=(248, 248, 248))
    c.label(0.50, 0.56, 0.045, patch=True)


def _draw_watch(c: _Canvas) -> None:
    c.body_rect((0.40, 0.06, 0.60, 0.36), radius=0.03)
    c.body_rect((0.40, 0.64, 0.60, 0.94), radius=0.03)
    c.fill()
    c.ellipse((0.28, 0.28, 0.72, 0.72), fill=c.second)
    c.ellipse((0.33, 0.33, 0.67, 0.67), fill=(250, 250, 246))
    c.line([(0.50, 0.50), (0.50, 0.38)], fill=(20, 20, 20), width=0.015)
    c.line([(0.50, 0.50), (0.60, 0.54)], fill=(20, 20, 20), width=0.012)
    c.label(0.50, 0.60, 0.035, patch=True)


def _draw_cap(c: _Canvas) -> None:
    c.body_pieslice((0.18, 0.26, 0.78, 0.90), 180, 360)
    c.fill()
    c.polygon([(0.70, 0.58), (0.94, 0.60), (0.92, 0.66), (0.70, 0.64)], fill=c.second)
    c.ellipse((0.45, 0.23, 0.51, 0.29), fill=c.second)
    c.label(0.46, 0.46, 0.055)


def _draw_umbrella(c: _Canvas) -> None:
    c.line([(0.50, 0.50), (0.50, 0.84)], fill=(70, 70, 74), width=0.02)
    c.arc((0.50, 0.78, 0.62, 0.90), 0, 180, fill=(70, 70, 74), width=0.02)
    c.body_pieslice((0.08, 0.16, 0.92, 0.84), 180, 360)
    c.fill()
    for x in (0.29, 0.50, 0.71):
        c.line([(0.50, 0.16), (x, 0.50)], fill=c.outline, width=0.006)
    c.label(0.50, 0.42, 0.05)


_DRAWINGS = {
    "shoes": _draw_shoes,
    "kettle": _draw_kettle,
    "tshirt": _draw_tshirt,
    "backpack": _draw_backpack,
    "mug": _draw_mug,
    "headphones": _draw_headphones,
    "lamp": _draw_lamp,
    "jacket": _draw_jacket,
    "bottle": _draw_bottle,
    "watch": _draw_watch,
    "cap": _draw_cap,
    "umbrella": _draw_umbrella,
}
