"""Tests for prodmatch.images: every image is made with Pillow in tmp_path, every URL is served from 127.0.0.1."""

from __future__ import annotations

import http.server
import io
import random
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin
from PIL.PngImagePlugin import PngInfo

from prodmatch.embed.images import ImageLimits, decode_image, load_image, read_image_bytes
from prodmatch.errors import ImageError

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def assert_colour(
    image: Image.Image, xy: tuple[int, int], expected: tuple[int, int, int], tol: int = 6
) -> None:
    actual = image.getpixel(xy)
    assert all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True)), (
        f"{actual} != {expected} at {xy}"
    )


def assert_loaded_rgb(image: Image.Image) -> None:
    assert image.mode == "RGB"
    # A plain Image (not a lazy ImageFile) holds its pixels in memory and no file handle.
    assert not isinstance(image, ImageFile.ImageFile)
    assert getattr(image, "fp", None) is None


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height: Image.open believes it, decoding never happens."""
    data = encode(Image.new("L", (1, 1)), "PNG")
    chunk = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def halves(size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", size, right)
    image.paste(left, (0, 0, size[0] // 2, size[1]))
    return image


# --- local files ---------------------------------------------------------------------------------------------


def test_load_jpeg_from_path(tmp_path):
    path = write(tmp_path, "red.jpg", encode(Image.new("RGB", (64, 48), RED), "JPEG", quality=95))
    image = load_image(path)
    assert_loaded_rgb(image)
    assert image.size == (64, 48)
    assert_colour(image, (10, 10), RED)


def test_read_image_bytes_returns_file_contents(tmp_path):
    data = encode(Image.new("RGB", (8, 8), RED), "PNG")
    assert read_image_bytes(write(tmp_path, "a.png", data)) == data


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="file not found") as raised:
        load_image(path)
    assert path in str(raised.value)
    assert raised.value.transient is False


def test_directory(tmp_path):
    with pytest.raises(ImageError, match="is a directory") as raised:
        load_image(str(tmp_path))
    assert raised.value.transient is False


def test_empty_file(tmp_path):
    path = write(tmp_path, "a.jpg", b"")
    with pytest.raises(ImageError) as raised:
        load_image(path)
    assert str(raised.value) == f"image {path!r}: file is empty (0 bytes)"


def test_file_over_byte_limit(tmp_path):
    path = write(tmp_path, "big.png", encode(noise((64, 64)), "PNG"))
    with pytest.raises(ImageError, match=r"file is \d+(\.\d)? KiB, over the 1 KiB limit"):
        load_image(path, ImageLimits(max_bytes=1024))


def test_empty_reference():
    with pytest.raises(ImageError, match="image reference is empty"):
        load_image("  ")


@pytest.mark.parametrize(
    "ref",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://example.com/a.jpg",
        "data:image/png;base64,iVBORw0KGgo=",
        "gopher://example.com/",
        "s3://bucket/key.jpg",
    ],
)
def test_unsupported_url_schemes(ref):
    with pytest.raises(
        ImageError, match=r"unsupported URL scheme .*only http\(s\) and local paths"
    ) as raised:
        read_image_bytes(ref)
    assert ref in str(raised.value)
    assert raised.value.transient is False


# --- broken and non-image data ---------------------------------------------------------------------------------


def truncated_jpeg() -> bytes:
    data = encode(noise((256, 256)), "JPEG", quality=90)
    return data[: len(data) * 6 // 10]


def truncated_png() -> bytes:
    data = encode(noise((256, 256)), "PNG")
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (random.Random(1).randbytes(4000), "not a recognised image format"),
        (b"\x89PNG\r\n\x1a\n" + random.Random(2).randbytes(500), "truncated or corrupt|not a recognised"),
        (b"\xff\xd8\xff\xe0" + random.Random(3).randbytes(500), "truncated or corrupt|not a recognised"),
        (b"GIF89a\x10\x00\x10\x00", "truncated or corrupt|not a recognised"),
        (truncated_jpeg(), r"truncated or corrupt \(image file is truncated"),
        (truncated_png(), "truncated or corrupt"),
        (b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>", "contains HTML, not an image"),
        (b"\xef\xbb\xbf  <html><body>Not found</body></html>", "contains HTML, not an image"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG drawing"),
        (b"<Error><Code>AccessDenied</Code></Error>", "contains text, not an image"),
        (b'{"error": "not found"}', r"contains text, not an image \(22 bytes\)$"),
        (encode(Image.new("RGB", (8, 8)), "PPM"), r"not a recognised image format \(supported: JPEG"),
    ],
    ids=[
        "garbage",
        "png-signature-then-garbage",
        "jpeg-marker-then-garbage",
        "gif-header-only",
        "truncated-jpeg",
        "truncated-png",
        "html",
        "html-with-bom",
        "svg",
        "xml-error",
        "json",
        "ppm-not-allowed",
    ],
)
def test_bad_data_is_a_clear_error(tmp_path, data, expected):
    path = write(tmp_path, "product.jpg", data)
    with pytest.raises(ImageError, match=expected) as raised:
        load_image(path)
    assert str(raised.value).startswith(f"image {path!r}: ")
    assert raised.value.transient is False


def test_decode_image_names_its_source():
    with pytest.raises(ImageError, match=r"^image 'row 7': contains HTML"):
        decode_image(b"<html></html>", source="row 7")
    with pytest.raises(ImageError, match=r"^image '<bytes>': image data is empty"):
        decode_image(b"")


def test_truncated_jpeg_does_not_need_global_flag():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageError, match="truncated"):
        decode_image(truncated_jpeg())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- colour modes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmyk", "rgb"),
    [((0, 255, 255, 0), RED), ((255, 0, 255, 0), GREEN), ((0, 0, 0, 0), WHITE), ((0, 0, 0, 255), BLACK)],
)
def test_cmyk_jpeg(cmyk, rgb):
    data = encode(Image.new("CMYK", (16, 16), cmyk), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    image = decode_image(data)
    assert_loaded_rgb(image)
    assert_colour(image, (8, 8), rgb)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_goes_white(fmt):
    image = Image.new("P", (20, 10), 1)
    image.putpalette([0, 0, 0] + list(RED) + [0, 0, 0] * 254)
    image.paste(0, (0, 0, 10, 10))  # index 0: black, but transparent
    result = decode_image(encode(image, fmt, transparency=0))
    assert_loaded_rgb(result)
    assert_colour(result, (2, 5), WHITE, tol=0)
    assert_colour(result, (15, 5), RED, tol=0)


def test_palette_with_partial_alpha_blends_with_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    result = decode_image(encode(image, "PNG", transparency=bytes([128])))  # tRNS: index 0 half opaque
    assert_colour(result, (1, 1), (127, 127, 127), tol=2)


LA_PIXELS = ("LA", [(0, 0), (0, 255), (0, 128)], [WHITE, BLACK, (127, 127, 127)])
RGBA_PIXELS = ("RGBA", [(*RED, 0), (*RED, 255), (*BLUE, 128)], [WHITE, RED, (127, 127, 255)])


@pytest.mark.parametrize(
    ("fmt", "mode", "pixels", "expected"),
    [
        ("PNG", *LA_PIXELS),
        ("TIFF", *LA_PIXELS),
        ("PNG", *RGBA_PIXELS),
        ("WEBP", *RGBA_PIXELS),
        ("TIFF", *RGBA_PIXELS),
    ],
)
def test_alpha_is_composited_onto_white(fmt, mode, pixels, expected):
    image = Image.new(mode, (len(pixels), 1))
    for x, value in enumerate(pixels):
        image.putpixel((x, 0), value)
    result = decode_image(encode(image, fmt, lossless=True) if fmt == "WEBP" else encode(image, fmt))
    assert_loaded_rgb(result)
    for x, colour in enumerate(expected):
        assert_colour(result, (x, 0), colour, tol=2)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(fmt):
    values = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    result = decode_image(data)
    assert_loaded_rgb(result)
    for x, grey in enumerate([0, 100, 128, 255]):
        assert_colour(result, (x, 0), (grey, grey, grey), tol=0)


def test_32_bit_and_float_greys_are_scaled():
    ints = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32))
    assert ints.mode == "I"
    assert [decode_image(encode(ints, "TIFF")).getpixel((x, 0)) for x in range(3)] == [
        BLACK,
        (128, 128, 128),
        WHITE,
    ]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert floats.mode == "F"
    assert [decode_image(encode(floats, "TIFF")).getpixel((x, 0)) for x in range(3)] == [
        BLACK,
        (128, 128, 128),
        WHITE,
    ]


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "GIF"])
def test_one_bit(fmt):
    image = Image.new("1", (8, 4), 0)
    image.paste(1, (4, 0, 8, 4))
    result = decode_image(encode(image, fmt))
    assert_loaded_rgb(result)
    assert result.getpixel((1, 1)) == BLACK
    assert result.getpixel((6, 1)) == WHITE


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG", "MPO"])
def test_animation_gives_first_frame(fmt):
    frames = [Image.new("RGB", (12, 8), colour) for colour in (RED, GREEN, BLUE)]
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    result = decode_image(data)
    assert_loaded_rgb(result)
    assert_colour(result, (6, 4), RED, tol=12)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"])
def test_every_allowed_format(fmt):
    result = decode_image(encode(halves((32, 16), RED, BLUE), fmt))
    assert_loaded_rgb(result)
    assert result.size == (32, 16)
    assert_colour(result, (4, 8), RED, tol=24)
    assert_colour(result, (28, 8), BLUE, tol=24)


@pytest.mark.parametrize("params", [{"lossless": True}, {"quality": 90}], ids=["lossless", "lossy"])
def test_webp(params):
    result = decode_image(encode(halves((32, 16), RED, BLUE), "WEBP", **params))
    assert_loaded_rgb(result)
    assert result.size == (32, 16)
    assert_colour(result, (4, 8), RED, tol=12)
    assert_colour(result, (28, 8), BLUE, tol=12)


@pytest.mark.parametrize(
    ("lab", "rgb"), [((128, 128, 128), (119, 119, 119)), ((136, 208, 195), (250, 3, 11))]
)
def test_lab_tiff(lab, rgb):
    data = encode(Image.new("LAB", (4, 4), lab), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "LAB"
    assert_colour(decode_image(data), (1, 1), rgb, tol=2)


# --- orientation and size -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "size", "red_at", "blue_at"),
    [
        (1, (40, 20), (5, 10), (35, 10)),  # as stored: red left
        (3, (40, 20), (35, 10), (5, 10)),  # turned 180 degrees: red right
        (6, (20, 40), (10, 5), (10, 35)),  # turned 90 clockwise: red top
        (8, (20, 40), (10, 35), (10, 5)),  # turned 90 anticlockwise: red bottom
    ],
)
def test_exif_orientation_is_applied(orientation, size, red_at, blue_at):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(halves((40, 20), RED, BLUE), "JPEG", quality=95, exif=exif)
    result = decode_image(data)
    assert_loaded_rgb(result)
    assert result.size == size
    assert_colour(result, red_at, RED, tol=12)
    assert_colour(result, blue_at, BLUE, tol=12)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize(
    "exif",
    [
        b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + bytes(5),  # IFD claims 65535 entries
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x09\x00\x00\x00",  # orientation 9 (no such)
        b"Exif\x00\x00junkjunkjunk",
    ],
    ids=["short-ifd", "orientation-9", "junk"],
)
def test_broken_exif_does_not_cost_the_picture(exif):
    result = decode_image(encode(Image.new("RGB", (8, 4), RED), "JPEG", exif=exif))
    assert result.size == (8, 4)
    assert_colour(result, (4, 2), RED, tol=12)


def test_markup_inside_image_metadata_is_not_mistaken_for_html():
    info = PngInfo()
    info.add_text("Description", "<html><body>product page</body></html>")
    data = encode(Image.new("RGB", (8, 8), RED), "PNG", pnginfo=info)
    assert b"<html>" in data[:200]
    assert_colour(decode_image(data), (4, 4), RED, tol=0)


@pytest.mark.parametrize(
    ("source_size", "max_side", "expected"),
    [
        ((400, 200), 100, (100, 50)),
        ((200, 400), 100, (50, 100)),
        ((50, 30), 100, (50, 30)),
        ((400, 200), None, (400, 200)),
    ],
)
def test_downscale_keeps_aspect(source_size, max_side, expected):
    data = encode(Image.new("RGB", source_size, GREEN), "PNG")
    result = decode_image(data, ImageLimits(max_side=max_side))
    assert result.size == expected
    assert_colour(result, (expected[0] // 2, expected[1] // 2), GREEN, tol=0)


@pytest.fixture
def draft_calls(monkeypatch):
    """Record what JPEG drafting did: (size asked for, size the decoder will produce)."""
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


def test_big_jpeg_is_decoded_at_reduced_size(draft_calls):
    data = encode(halves((800, 800), RED, BLUE), "JPEG", quality=90)
    result = decode_image(data, ImageLimits(max_side=224))
    assert draft_calls[0] == ((224, 224), (400, 400))  # libjpeg decoded at 1/2 scale, never below the target
    assert result.size == (224, 224)
    assert_colour(result, (40, 112), RED, tol=12)
    assert_colour(result, (180, 112), BLUE, tol=12)


def test_draft_with_exif_rotation(draft_calls):
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(halves((1600, 800), RED, BLUE), "JPEG", quality=90, exif=exif)
    result = decode_image(data, ImageLimits(max_side=200))
    assert draft_calls[0] == ((200, 100), (200, 100))  # 1/8 scale, in the stored orientation
    assert result.size == (100, 200)
    assert_colour(result, (50, 20), RED, tol=12)


def test_no_draft_without_max_side(draft_calls):
    data = encode(Image.new("RGB", (600, 300), RED), "JPEG")
    assert decode_image(data, ImageLimits(max_side=None)).size == (600, 300)
    assert draft_calls == []


@pytest.mark.parametrize(
    ("source_size", "fmt", "drafted", "expected"),
    [
        ((800, 800), "JPEG", (400, 400), (224, 224)),  # 1/2 scale: 1/4 would be 200, below 224
        ((1600, 800), "JPEG", (800, 400), (448, 224)),  # 1/2 scale: 1/4 would be 400x200
        ((3000, 2000), "JPEG", (375, 250), (336, 224)),  # 1/8 scale, then one resample
        ((1000, 500), "PNG", None, (448, 224)),  # no draft outside JPEG; the longer side is rounded down
        ((500, 1001), "PNG", None, (224, 448)),
        ((300, 200), "JPEG", None, (300, 200)),  # already small: never upscaled, never drafted
        ((100, 1000), "JPEG", None, (100, 1000)),  # shortest side below the target: left alone
    ],
)
def test_shortest_side_decodes_just_big_enough(draft_calls, source_size, fmt, drafted, expected):
    data = encode(halves(source_size, RED, BLUE), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    # shortest_side overrides max_side: the 3000x2000 photo ends 336 wide
    result = decode_image(data, ImageLimits(max_side=512, shortest_side=224))
    assert result.size == expected
    assert_loaded_rgb(result)
    if drafted is None:
        assert draft_calls == []
    else:
        assert draft_calls[0][1] == drafted
        assert min(drafted) >= 224
    assert_colour(result, (expected[0] // 4, expected[1] // 2), RED, tol=12)
    assert_colour(result, (expected[0] * 3 // 4, expected[1] // 2), BLUE, tol=12)


def test_shortest_side_with_exif_rotation(draft_calls):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    data = encode(halves((1600, 800), RED, BLUE), "JPEG", quality=90, exif=exif)
    result = decode_image(data, ImageLimits(shortest_side=100))
    assert draft_calls[0][1] == (200, 100)  # 1/8 scale in the stored orientation
    assert result.size == (100, 200)
    assert_colour(result, (50, 20), RED, tol=12)


# --- decompression bombs ----------------------------------------------------------------------------------------


def test_bomb_refused_from_header_before_decoding(tmp_path):
    path = write(tmp_path, "bomb.png", png_claiming(8000, 6000))
    with pytest.raises(ImageError) as raised:
        load_image(path)
    assert str(raised.value) == (
        f"image {path!r}: 8000x6000 = 48 Mpx exceeds the 40 Mpx limit (decompression bomb?)"
    )
    assert raised.value.transient is False


def test_huge_bomb_refused_by_pillow_is_an_image_error():
    # Past 2 * Image.MAX_IMAGE_PIXELS, Pillow raises DecompressionBombError inside Image.open itself.
    with pytest.raises(ImageError, match=r"625 Mpx exceeds the 40 Mpx limit \(decompression bomb\?\)"):
        decode_image(png_claiming(25000, 25000))


def test_bomb_between_pillow_warning_and_error_levels():
    # 100 Mpx: Pillow only warns (DecompressionBombWarning); our own, lower limit refuses it.
    with (
        pytest.warns(Image.DecompressionBombWarning),
        pytest.raises(ImageError, match=r"10000x10000 = 100 Mpx exceeds the 40 Mpx limit"),
    ):
        decode_image(png_claiming(10000, 10000))


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_bomb_warning_raised_as_error_is_an_image_error():
    limits = ImageLimits(max_pixels=150_000_000)
    with pytest.raises(ImageError, match=r"100 Mpx exceeds the 150 Mpx limit"):
        decode_image(png_claiming(10000, 10000), limits)


def test_small_pixel_limit():
    with pytest.raises(ImageError, match=r"40x30 = 1,200 px exceeds the 1,000 px limit"):
        decode_image(encode(Image.new("RGB", (40, 30)), "PNG"), ImageLimits(max_pixels=1000))


def test_pillow_global_limits_are_untouched(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError):
        decode_image(png_claiming(8000, 6000))
    decode_image(encode(Image.new("RGB", (40, 30)), "PNG"), ImageLimits(max_pixels=2000))
    assert before == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- http(s) -----------------------------------------------------------------------------------------------------

GOOD_JPEG = encode(halves((64, 48), RED, BLUE), "JPEG", quality=95)
HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please log in</body></html>"
# Seconds the slow routes stall; the tests pass a read timeout (0.3 s) far under it, so that "cut by the read
# timeout" and "waited for the stall" stay apart on a busy machine (the handlers sleep on after the client left).
SLOW = 5.0
# The test server listens on loopback, which downloads refuse unless allowed (tests/embed/test_image_safety.py).
LOCAL = ImageLimits(allowed_networks=("127.0.0.1/32",))
TINY_TIMEOUTS = ImageLimits(connect_timeout=2.0, read_timeout=0.3, allowed_networks=LOCAL.allowed_networks)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        route = self.path.split("?")[0]
        try:
            if route.startswith("/status/"):
                self.reply(int(route.removeprefix("/status/")), b"nope", "text/plain")
            elif route in ROUTES:
                ROUTES[route](self)
            else:
                self.reply(404, b"no such route", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first, as some tests intend

    def reply(self, status, body, content_type, *, length=True):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # keep test output quiet
        pass


def slow_headers(handler):
    time.sleep(SLOW)
    handler.reply(200, GOOD_JPEG, "image/jpeg")


def slow_body(handler):
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(len(GOOD_JPEG)))
    handler.end_headers()
    handler.wfile.write(GOOD_JPEG[:100])
    handler.wfile.flush()
    time.sleep(SLOW)
    handler.wfile.write(GOOD_JPEG[100:])


def big_declared(handler):
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(10 * 1024 * 1024))
    handler.end_headers()  # and no body: a client that trusts the header never reads


def big_streamed(handler):
    body = GOOD_JPEG[:4] + bytes(5000)
    handler.reply(200, body, "image/jpeg", length=False)  # HTTP/1.0: the body ends when the connection closes


def hang_up(handler):
    handler.close_connection = True  # no status line at all


ROUTES = {
    "/good.jpg": lambda h: h.reply(200, GOOD_JPEG, "image/jpeg"),
    "/mislabelled.jpg": lambda h: h.reply(200, GOOD_JPEG, "text/html; charset=utf-8"),
    "/page.html": lambda h: h.reply(200, HTML_PAGE, "text/html; charset=utf-8"),
    "/html-as-image.jpg": lambda h: h.reply(200, HTML_PAGE, "image/jpeg"),
    "/empty.jpg": lambda h: h.reply(200, b"", "image/jpeg"),
    "/slow-headers.jpg": slow_headers,
    "/slow-body.jpg": slow_body,
    "/big-declared.jpg": big_declared,
    "/big-streamed.jpg": big_streamed,
    "/hang-up.jpg": hang_up,
    "/to-file": lambda h: h.redirect("file:///etc/passwd"),
    "/to-ftp": lambda h: h.redirect("ftp://127.0.0.1/good.jpg"),
    "/to-data": lambda h: h.redirect("data:image/jpeg;base64,/9j/4AAQ"),
    "/to-good": lambda h: h.redirect("/good.jpg"),
    "/to-to-good": lambda h: h.redirect("/to-good"),
}


class QuietServer(http.server.ThreadingHTTPServer):
    block_on_close = False  # do not wait for handlers still sleeping on a route the client gave up on

    def handle_error(self, request, client_address):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("route", ["/good.jpg", "/mislabelled.jpg", "/to-good", "/to-to-good"])
def test_url_is_loaded(server, route):
    image = load_image(server + route, LOCAL)
    assert_loaded_rgb(image)
    assert image.size == (64, 48)
    assert_colour(image, (8, 24), RED, tol=12)
    assert_colour(image, (56, 24), BLUE, tol=12)


def test_read_image_bytes_from_url(server):
    assert read_image_bytes(server + "/good.jpg", LOCAL) == GOOD_JPEG


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (404, False),
        (403, False),
        (410, False),
        (400, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
    ],
)
def test_http_errors(server, status, transient):
    url = f"{server}/status/{status}"
    with pytest.raises(ImageError, match=rf"^image '{url}': server returned HTTP {status} ") as raised:
        load_image(url, LOCAL)
    assert raised.value.transient is transient


@pytest.mark.parametrize("route", ["/page.html", "/html-as-image.jpg"])
def test_html_instead_of_image(server, route):
    with pytest.raises(ImageError, match="server returned HTML, not an image") as raised:
        load_image(server + route, LOCAL)
    assert "Sign in" not in str(raised.value)  # what the page says is not repeated
    assert raised.value.transient is False


def test_empty_response(server):
    with pytest.raises(ImageError, match=r"empty response \(0 bytes\)"):
        load_image(server + "/empty.jpg", LOCAL)


@pytest.mark.parametrize("route", ["/slow-headers.jpg", "/slow-body.jpg"])
def test_read_timeout_is_transient(server, route):
    started = time.monotonic()
    with pytest.raises(ImageError, match="did not answer in time") as raised:
        load_image(server + route, TINY_TIMEOUTS)
    assert raised.value.transient is True
    assert time.monotonic() - started < SLOW


def test_content_length_over_limit_is_refused_before_reading(server):
    with pytest.raises(
        ImageError, match=r"announced 10 MiB \(Content-Length\), over the 1 KiB limit"
    ) as raised:
        load_image(
            server + "/big-declared.jpg", ImageLimits(max_bytes=1024, allowed_networks=LOCAL.allowed_networks)
        )
    assert raised.value.transient is False


def test_streamed_body_over_limit_is_cut_off(server):
    with pytest.raises(ImageError, match=r"download is over the 2 KiB limit"):
        load_image(
            server + "/big-streamed.jpg", ImageLimits(max_bytes=2048, allowed_networks=LOCAL.allowed_networks)
        )


@pytest.mark.parametrize(
    ("route", "target"),
    [("/to-file", "file:///etc/passwd"), ("/to-ftp", "ftp://127.0.0.1/good.jpg"), ("/to-data", "data:")],
)
def test_redirect_away_from_http_is_refused(server, route, target):
    with pytest.raises(ImageError, match="only redirects to http\\(s\\) are followed") as raised:
        load_image(server + route, LOCAL)
    assert target in str(raised.value)
    assert raised.value.transient is False


def test_connection_refused_is_transient():
    with socket.socket() as probe:  # a port nobody listens on (just closed)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ImageError, match="connection refused") as raised:
        load_image(f"http://127.0.0.1:{port}/a.jpg", TINY_TIMEOUTS)
    assert raised.value.transient is True


def test_server_hanging_up_is_transient(server):
    with pytest.raises(ImageError, match="closed by the server") as raised:
        load_image(server + "/hang-up.jpg", LOCAL)
    assert raised.value.transient is True


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http:///a.jpg", r"cannot download \(no host given\)"),
        ("http://127.0.0.1:notaport/a.jpg", r"invalid URL \(nonnumeric port"),
        ("http://[::1/a.jpg", r"invalid URL \(Invalid IPv6 URL\)"),
        ("http://127.0.0.1/a b\r\nX-Injected: 1", r"invalid URL \(URL can't contain control characters"),
    ],
)
def test_invalid_urls(url, expected):
    with pytest.raises(ImageError, match=expected) as raised:
        load_image(url)
    assert raised.value.transient is False


def test_https_goes_through_tls(server):
    # The test server speaks plain HTTP, so the TLS handshake fails: proof the https:// path really uses TLS.
    with pytest.raises(ImageError, match=r"TLS error \(.*WRONG_VERSION_NUMBER") as raised:
        load_image(server.replace("http://", "https://") + "/good.jpg", TINY_TIMEOUTS)
    assert raised.value.transient is False


# --- threads --------------------------------------------------------------------------------------------------


def test_many_threads_at_once(tmp_path, server):
    refs = {
        write(tmp_path, "a.png", encode(Image.new("RGBA", (30, 20), (*RED, 0)), "PNG")): ((30, 20), WHITE),
        write(tmp_path, "b.jpg", encode(Image.new("CMYK", (50, 10), (0, 255, 255, 0)), "JPEG")): (
            (50, 10),
            RED,
        ),
        write(tmp_path, "c.webp", encode(Image.new("RGB", (600, 300), BLUE), "WEBP")): ((100, 50), BLUE),
        server + "/good.jpg": ((64, 48), RED),
    }
    bad = [write(tmp_path, "bomb.png", png_claiming(8000, 6000)), str(tmp_path / "missing.jpg")]

    def work(ref):
        try:
            image = load_image(ref, ImageLimits(max_side=100, allowed_networks=LOCAL.allowed_networks))
        except ImageError as e:
            return str(e)
        return image.size, image.getpixel((2, 2))

    jobs = (list(refs) + bad) * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, jobs))
    for ref, result in zip(jobs, results, strict=True):
        if ref in refs:
            size, colour = refs[ref]
            assert result[0] == size
            assert all(abs(a - e) <= 12 for a, e in zip(result[1], colour, strict=True))
        else:
            assert isinstance(result, str)
            assert ref in result
