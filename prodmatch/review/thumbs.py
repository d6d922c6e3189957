"""Thumbnails of products' stored images, made on the fly and kept in a small in-memory LRU cache.

A thumbnail is asked for by product id, never by path or URL: the only reference ever loaded is the one stored in
`prodmatch.products.image` for that product, read through the embedding worker's safe loader (byte, pixel and
time caps, http(s) and plain files only). So the review app cannot be turned into a file reader or a proxy to
internal hosts by a crafted request.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from prodmatch.errors import ImageError
from prodmatch.review import data

SIZES = (96, 240, 480)  # the sizes pages ask for; any other size is rounded up to the next one


@dataclass(frozen=True)
class Thumbnail:
    """Encoded thumbnail bytes and their media type."""

    content: bytes
    media_type: str


class ThumbnailCache:
    """Make thumbnails through the safe loader and keep the most recent `capacity` of them."""

    def __init__(self, capacity: int = 512, allow_private_addresses: bool = False, roots: tuple = ()) -> None:
        self.capacity = capacity
        self.allow_private_addresses = allow_private_addresses
        self.roots = roots  # folders local images may come from (the worker's images roots)
        self._items: OrderedDict[tuple[str, int], Thumbnail] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ref: str, size: int) -> Thumbnail:
        """The thumbnail of image reference `ref` at `size` px; raises ImageError when it cannot be loaded."""
        size = next((s for s in SIZES if s >= size), SIZES[-1])
        key = (ref, size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        thumbnail = make_thumbnail(ref, size, self.allow_private_addresses, self.roots)
        with self._lock:
            self._items[key] = thumbnail
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return thumbnail

    def __len__(self) -> int:
        return len(self._items)


def make_thumbnail(
    ref: str, size: int, allow_private_addresses: bool = False, roots: tuple = ()
) -> Thumbnail:
    """Load `ref` with the worker's loader, fit it in size x size, encode as JPEG (PNG when small and flat)."""
    image = data.load_image(
        ref, data.image_limits(max_side=size, allow_private_addresses=allow_private_addresses, roots=roots)
    )
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return encode(image)


def encode(image: Image.Image) -> Thumbnail:
    """JPEG for photographs; PNG when it is smaller (drawings with few colours stay crisp)."""
    jpeg, png = io.BytesIO(), io.BytesIO()
    image.save(jpeg, "JPEG", quality=85, optimize=True)
    if image.getcolors(256) is not None:
        image.save(png, "PNG", optimize=True)
        if png.tell() <= jpeg.tell():
            return Thumbnail(png.getvalue(), "image/png")
    return Thumbnail(jpeg.getvalue(), "image/jpeg")


__all__ = ["SIZES", "ImageError", "Thumbnail", "ThumbnailCache", "encode", "make_thumbnail"]
