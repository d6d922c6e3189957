"""Turn an image reference (a local path or an http(s) URL) into a safe, fully loaded RGB image, or a clear error.
It sits between ``ingest``, which stores each product's image reference, and ``embed.encoders``, whose image tower
takes the result; ``embed.batch.ImageLoader`` calls it from the worker's thread pool. Reading is capped in bytes and time, decoding is capped
in pixels before any pixel is decoded, and whatever the file holds (CMYK, palettes with transparency, 16-bit greys,
animations, EXIF rotation) comes out as an upright 8-bit RGB image on a white background whose longest side fits
``ImageLimits.max_side`` (or whose shortest side is ``ImageLimits.shortest_side``, the size a model's image processor
resizes to: the worker asks for that, so a big JPEG is decoded at a fraction of its size and resampled only once). Every failure is an :class:`~prodmatch.errors.ImageError` that names the reference and
says, in ``transient``, whether retrying later may help. Nothing here changes Pillow's global settings.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import socket
import ssl
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import numpy as np
from PIL import Image, ImageOps

from prodmatch import __version__
from prodmatch.errors import ImageError

# Formats a product photo can reasonably come in. Restricting Image.open to these keeps exotic decoders (EPS runs
# Ghostscript, for one) away from bytes that came off the internet.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

_URL_SCHEMES = ("http", "https")
_CHUNK = 64 * 1024
_USER_AGENT = f"prodmatch/{__version__} (product image fetcher)"

# Load every Pillow plugin now, once, rather than lazily from whichever worker thread opens the first WebP.
Image.init()


@dataclass(frozen=True)
class ImageLimits:
    """How much an image may cost to read and decode, and how big the result may be."""

    max_pixels: int = 40_000_000  # decompression-bomb cap (width*height of the source image)
    max_bytes: int = 20 * 1024 * 1024  # cap on file size / downloaded bytes
    connect_timeout: float = 5.0  # seconds to open the connection
    read_timeout: float = 15.0  # seconds to wait for each piece of the response
    max_side: int | None = 1024  # downscale (keeps aspect) so the longest side <= max_side; None = keep
    # Downscale (keeps aspect) so the shortest side is this long instead; overrides max_side. Set it to the size the
    # consumer resizes to anyway (a model's input): JPEGs then decode at 1/2, 1/4 or 1/8 scale where that is still
    # big enough, and the result needs no second resampling.
    shortest_side: int | None = None


def load_image(ref: str, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Read the image at `ref` (a local path or an http(s) URL) and return it as a loaded RGB image."""
    return decode_image(read_image_bytes(ref, limits), limits, source=ref)


def read_image_bytes(ref: str, limits: ImageLimits = ImageLimits()) -> bytes:
    """Return the bytes of a local file or an http(s) URL, at most `limits.max_bytes` of them."""
    if not ref or not ref.strip():
        raise ImageError("image reference is empty")
    try:
        scheme = urlsplit(ref).scheme.lower()
    except ValueError as e:  # e.g. "http://[::1" (an unclosed IPv6 address)
        raise ImageError(f"{_label(ref)}: invalid URL ({_reason(e)})") from None
    if scheme in _URL_SCHEMES:
        return _download(ref, limits)
    if scheme and len(scheme) > 1:  # one letter is a Windows drive ("C:\\..."), not a URL scheme
        raise ImageError(f"{_label(ref)}: unsupported URL scheme {scheme!r}, only http(s) and local paths")
    return _read_file(ref, limits)


def decode_image(data: bytes, limits: ImageLimits = ImageLimits(), *, source: str = "<bytes>") -> Image.Image:
    """Decode image bytes into a loaded, upright RGB image no larger than `limits.max_side`.

    `source` only names the image in error messages.
    """
    label = _label(source)
    if not data:
        raise ImageError(f"{label}: image data is empty (0 bytes)")
    markup = _sniff_markup(data)
    if markup:
        raise ImageError(f"{label}: contains {markup}, not an image")
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            _check_pixels(image, limits, label)
            _draft_jpeg(image, limits)
            image.load()
            image = _upright(image)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(f"{label}: {_unrecognised(data)}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{label}: {_bomb_message(e, limits)}") from None
    except MemoryError:
        raise ImageError(f"{label}: not enough memory to decode this image") from None
    except Exception as e:  # Pillow reports broken data as OSError, SyntaxError, ValueError, struct.error ...
        raise ImageError(f"{label}: image is truncated or corrupt ({_reason(e)})") from None
    rgb = _to_rgb(image, label)
    if limits.shortest_side is not None:
        return _fit_shortest_side(rgb, limits.shortest_side)
    if limits.max_side is not None:
        rgb.thumbnail((limits.max_side, limits.max_side))
    return rgb


# --- local files ------------------------------------------------------------------------------------------------


def _read_file(path: str, limits: ImageLimits) -> bytes:
    label = _label(path)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"{label}: is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{label}: is not a regular file")
        if info.st_size == 0:
            raise ImageError(f"{label}: file is empty (0 bytes)")
        if info.st_size > limits.max_bytes:
            raise ImageError(
                f"{label}: file is {_size_text(info.st_size)}, over the {_size_text(limits.max_bytes)} limit"
            )
        with open(path, "rb") as file:
            data = file.read(limits.max_bytes + 1)  # the file may have grown since stat()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found") from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied") from None
    except (OSError, ValueError) as e:  # ValueError: a path with a NUL byte in it
        raise ImageError(f"{label}: cannot read file ({_reason(e)})") from None
    if len(data) > limits.max_bytes:
        raise ImageError(f"{label}: file is over the {_size_text(limits.max_bytes)} limit")
    if not data:
        raise ImageError(f"{label}: file is empty (0 bytes)")
    return data


# --- http(s) ----------------------------------------------------------------------------------------------------


def _download(url: str, limits: ImageLimits) -> bytes:
    label = _label(url)
    request = urllib.request.Request(
        url, headers={"User-Agent": _USER_AGENT, "Accept": "image/*,*/*;q=0.5", "Accept-Encoding": "identity"}
    )
    try:
        with _opener(label, limits).open(request, timeout=limits.connect_timeout) as response:
            return _read_body(response, label, limits)
    except ImageError:
        raise
    except urllib.error.HTTPError as e:
        e.close()
        transient = e.code in (408, 425, 429) or e.code >= 500
        raise ImageError(f"{label}: server returned HTTP {e.code} {e.reason}", transient=transient) from None
    except urllib.error.URLError as e:
        raise _network_error(label, e.reason, limits) from None
    except (http.client.InvalidURL, ValueError) as e:  # e.g. a port that is not a number
        raise ImageError(f"{label}: invalid URL ({_reason(e)})") from None
    except (OSError, http.client.HTTPException) as e:
        raise _network_error(label, e, limits) from None


def _opener(label: str, limits: ImageLimits) -> urllib.request.OpenerDirector:
    """A fresh opener per call (no global install_opener) that speaks only http(s)."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _HTTPHandler(limits.read_timeout),
        _HTTPSHandler(limits.read_timeout),
        _RedirectHandler(label),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _read_body(response: http.client.HTTPResponse, label: str, limits: ImageLimits) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > limits.max_bytes:
        raise ImageError(
            f"{label}: server announced {_size_text(int(declared))} (Content-Length), "
            f"over the {_size_text(limits.max_bytes)} limit"
        )
    content_type = response.headers.get("Content-Type", "unknown")
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(_CHUNK):
        if not chunks:
            # An HTML error or login page is answered at once, without downloading the rest.
            markup = _sniff_markup(chunk)
            if markup:
                title = _html_title(chunk)
                hint = f", page title {title!r}" if title else ""
                raise ImageError(
                    f"{label}: server returned {markup}, not an image (Content-Type: {content_type}{hint})"
                )
        total += len(chunk)
        if total > limits.max_bytes:
            raise ImageError(f"{label}: download is over the {_size_text(limits.max_bytes)} limit")
        chunks.append(chunk)
    if not total:
        raise ImageError(f"{label}: server returned an empty response (0 bytes)")
    return b"".join(chunks)


def _network_error(label: str, reason: object, limits: ImageLimits) -> ImageError:
    """Describe a failure to talk to the server; most are worth retrying later."""
    if isinstance(reason, TimeoutError):
        return ImageError(
            f"{label}: server did not answer in time (connect timeout {limits.connect_timeout:g} s, "
            f"read timeout {limits.read_timeout:g} s)",
            transient=True,
        )
    if isinstance(reason, ConnectionRefusedError):
        return ImageError(f"{label}: connection refused by the server", transient=True)
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return ImageError(f"{label}: connection closed by the server ({_reason(reason)})", transient=True)
    if isinstance(reason, socket.gaierror):
        transient = reason.errno == socket.EAI_AGAIN
        return ImageError(f"{label}: host name cannot be resolved ({_reason(reason)})", transient=transient)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return ImageError(f"{label}: TLS certificate check failed ({_reason(reason)})")
    if isinstance(reason, ssl.SSLError):
        transient = isinstance(reason, (ssl.SSLEOFError, ssl.SSLZeroReturnError))  # cut off mid-handshake
        return ImageError(f"{label}: TLS error ({_reason(reason)})", transient=transient)
    if isinstance(reason, http.client.IncompleteRead):
        return ImageError(f"{label}: connection closed before the whole image arrived", transient=True)
    if isinstance(reason, http.client.HTTPException):
        return ImageError(
            f"{label}: server sent an invalid HTTP response ({_reason(reason)})", transient=True
        )
    if isinstance(reason, OSError):
        return ImageError(f"{label}: network error ({_reason(reason)})", transient=True)
    return ImageError(f"{label}: cannot download ({reason})")  # urllib's own words, e.g. "no host given"


class _ReadTimeout:
    """Connect within the request's timeout (the connect timeout), then allow `read_timeout` for each read."""

    def __init__(self, *args, read_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self.read_timeout)


class _HTTPConnection(_ReadTimeout, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ReadTimeout, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._read_timeout = read_timeout

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req, read_timeout=self._read_timeout)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._read_timeout = read_timeout

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self._context, read_timeout=self._read_timeout)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s): a redirect to file:// or ftp:// must not read other things."""

    def __init__(self, label: str) -> None:
        self._label = label

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("Location") or headers.get("URI")
        if location:
            target = urljoin(req.full_url, location)
            if urlsplit(target).scheme.lower() not in _URL_SCHEMES:
                fp.close()
                raise ImageError(
                    f"{self._label}: server redirected to {target!r}; only redirects to http(s) are followed"
                )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


# --- decoding ---------------------------------------------------------------------------------------------------


def _check_pixels(image: Image.Image, limits: ImageLimits, label: str) -> None:
    """Refuse an image whose header promises more pixels than allowed, before decoding any of them."""
    width, height = image.size
    pixels = width * height
    if pixels > limits.max_pixels:
        raise ImageError(
            f"{label}: {width}x{height} = {_pixels_text(pixels)} exceeds the "
            f"{_pixels_text(limits.max_pixels)} limit (decompression bomb?)"
        )


def _draft_jpeg(image: Image.Image, limits: ImageLimits) -> None:
    """Let libjpeg decode a big JPEG at 1/2, 1/4 or 1/8 scale, no smaller than the final image."""
    if image.format not in ("JPEG", "MPO"):
        return
    width, height = image.size
    if limits.shortest_side is not None:
        scale = limits.shortest_side / min(width, height)
    elif limits.max_side is not None:
        scale = limits.max_side / max(width, height)
    else:
        return
    if scale >= 1:
        return
    # Pillow picks the largest reduction that still covers the requested size in both directions.
    image.draft(image.mode, (max(1, round(width * scale)), max(1, round(height * scale))))


def _fit_shortest_side(image: Image.Image, side: int) -> Image.Image:
    """Downscale so the shortest side is `side`, the longer one rounded down as transformers' image processors do.

    Bicubic with Pillow's reducing gap, as `Image.thumbnail`; a model's processor that resizes the shortest edge to
    `side` then finds nothing left to do.
    """
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short <= side:
        return image
    new_long = int(side * long / short)
    size = (side, new_long) if width <= height else (new_long, side)
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; return a copy detached from the file (the current, i.e. first, frame)."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not cost us a picture that decodes fine
        return image.copy()


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    """Convert any mode to 8-bit RGB; transparent parts become white, as on a product page."""
    try:
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):
            image = _to_8bit_grey(image)
        if image.mode == "RGB":
            return image
        if image.has_transparency_data:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError(f"{label}: colour mode {image.mode} is not supported ({_reason(e)})") from None


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit and float greys to 0..255 (Pillow's own convert clips everything above 255 to white)."""
    values = np.asarray(image).astype(np.float32)
    if image.mode == "F":
        low, high = float(values.min()), float(values.max())
        if low >= 0.0 and high <= 1.0:
            values = values * 255.0
        elif high > low:
            values = (values - low) * (255.0 / (high - low))
    elif image.mode.startswith("I;16") or (values.min() >= 0 and values.max() <= 65535):
        values = values / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        values = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _bomb_message(error: Exception, limits: ImageLimits) -> str:
    """Pillow refuses gigantic images inside Image.open, before we see their size; say so in our own words."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    pillow_limit = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    limit = limits.max_pixels if pillow_limit is None else min(limits.max_pixels, pillow_limit)
    if found:
        return f"{_pixels_text(int(found.group(1)))} exceeds the {_pixels_text(limit)} limit (decompression bomb?)"
    return f"image is too large to decode safely (decompression bomb?): {error}"


def _sniff_markup(data: bytes) -> str | None:
    """Name the markup (HTML, SVG, XML) that `data` starts with, if any; servers love to answer with a web page."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head.startswith(b"<"):  # no image format starts with "<"; metadata inside an image may contain one
        return None
    if head.startswith((b"<!doctype html", b"<head", b"<body")) or b"<html" in head:
        return "HTML"
    if head.startswith((b"<svg", b"<!doctype svg")) or (head.startswith(b"<?xml") and b"<svg" in head):
        return "an SVG drawing (convert it to PNG or JPEG)"
    if head.startswith(b"<?xml"):
        return "XML"
    return None


def _html_title(data: bytes) -> str | None:
    found = re.search(rb"<title[^>]*>(.*?)</title>", data[:_CHUNK], re.IGNORECASE | re.DOTALL)
    if not found:
        return None
    title = " ".join(found.group(1).decode("utf-8", "replace").split())
    return title[:80] or None


def _unrecognised(data: bytes) -> str:
    head = data[:64]
    text = head.decode("utf-8", errors="ignore")
    if len(text) >= 0.9 * len(head) and all(c.isprintable() or c.isspace() for c in text):
        return f"contains text, not an image (starts with {' '.join(text.split())[:40]!r})"
    return f"not a recognised image format (supported: {', '.join(ALLOWED_FORMATS)})"


def _label(ref: str) -> str:
    shown = ref if len(ref) <= 200 else ref[:120] + "…" + ref[-60:]
    return f"image {shown!r}"


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _pixels_text(pixels: int) -> str:
    if pixels >= 1_000_000:
        return f"{pixels / 1_000_000:.1f}".removesuffix(".0") + " Mpx"
    return f"{pixels:,} px"


def _size_text(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
