"""Turn an image reference (a local path or an http(s) URL) into a safe, fully loaded RGB image, or a clear error.
It sits between ``ingest``, which stores each product's image reference (checking local ones with
:func:`check_local_reference`), and ``embed.encoders``, whose image tower takes the result; ``embed.batch.ImageLoader``
calls it from the worker's thread pool. Image references come from catalogues written by other people, so reading is confined: a local path
must resolve inside an allowed images root (``ImageLimits.roots``), and a URL may only reach public addresses
(``netguard.py`` checks the one address actually connected to, on every redirect hop) unless an allow-list opens an
internal CDN. Reading is capped in bytes and in total time (``ImageLimits.total_timeout`` bounds connect, TLS and
every read together), decoding is capped in pixels before any pixel is decoded, and whatever the file holds (CMYK,
palettes with transparency, 16-bit greys, animations, EXIF rotation) comes out as an upright 8-bit RGB image on a
white background whose longest side fits ``ImageLimits.max_side`` (or whose shortest side is
``ImageLimits.shortest_side``, the size a model's image processor resizes to: the worker asks for that, so a big
JPEG is decoded at a fraction of its size and resampled only once). Every failure is an
:class:`~prodmatch.errors.ImageError` that names the reference and says, in ``transient``, whether retrying later
may help; its message says what kind of thing was found ("HTML", "text", "N bytes of an unrecognised format") and
never quotes the bytes of a file or of a response, because errors are stored where analysts read them. Nothing
here changes Pillow's global settings.
"""

from __future__ import annotations

import errno
import http
import http.client
import io
import os
import re
import socket
import ssl
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import numpy as np
from PIL import Image, ImageOps

from prodmatch import __version__
from prodmatch.embed.netguard import AllowList, resolve_host
from prodmatch.errors import ImageError

# Formats a product photo can reasonably come in. Restricting Image.open to these keeps exotic decoders (EPS runs
# Ghostscript, for one) away from bytes that came off the internet.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

_URL_SCHEMES = ("http", "https")
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024
_USER_AGENT = f"prodmatch/{__version__} (product image fetcher)"
_HEADERS = {
    "User-Agent": _USER_AGENT,
    "Accept": "image/*,*/*;q=0.5",
    "Accept-Encoding": "identity",
    "Connection": "close",
}

# Load every Pillow plugin now, once, rather than lazily from whichever worker thread opens the first WebP.
Image.init()


@dataclass(frozen=True)
class ImageLimits:
    """How much an image may cost to read and decode, where it may come from, and how big the result may be."""

    max_pixels: int = 40_000_000  # decompression-bomb cap (width*height of the source image)
    max_bytes: int = 20 * 1024 * 1024  # cap on file size / downloaded bytes
    connect_timeout: float = 5.0  # seconds to open the connection (and finish the TLS handshake)
    read_timeout: float = 15.0  # seconds to wait for each piece of the response
    # Seconds for the whole download: resolving aside, connect, TLS, every redirect hop and every read together.
    # Per-read timeouts alone let a server that sends a byte every few seconds hold a worker thread for days.
    total_timeout: float = 30.0
    max_side: int | None = 1024  # downscale (keeps aspect) so the longest side <= max_side; None = keep
    # Downscale (keeps aspect) so the shortest side is this long instead; overrides max_side. Set it to the size the
    # consumer resizes to anyway (a model's input): JPEGs then decode at 1/2, 1/4 or 1/8 scale where that is still
    # big enough, and the result needs no second resampling.
    shortest_side: int | None = None
    # Folders local image paths must resolve inside (symlinks followed). None: local paths are not confined, for
    # callers that pass paths they chose themselves; anything reading references from a catalogue or the database
    # must set it. () refuses every local path.
    roots: tuple[Path, ...] | None = None
    # Non-public networks ("10.1.0.0/16") and host names ("cdn.internal", "*.img.corp") a download may reach
    # anyway: an internal image CDN. Public addresses need no entry. See netguard.parse_allow_list for the
    # PRODMATCH_IMAGE_ALLOW format that fills both.
    allowed_networks: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_redirects: int = 5

    def __post_init__(self) -> None:
        if self.roots is not None:
            object.__setattr__(self, "roots", tuple(Path(root) for root in self.roots))
        object.__setattr__(self, "allowed_networks", tuple(self.allowed_networks))
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        self.allow_list  # noqa: B018 -- refuse a malformed network now, not at the first download

    @property
    def allow_list(self) -> AllowList:
        return AllowList(self.allowed_networks, self.allowed_hosts)


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


def check_local_reference(ref: str, roots: Sequence[str | os.PathLike[str]]) -> str:
    """Return local image path `ref` as an absolute path inside one of `roots`, or raise ImageError saying why not.

    A relative `ref` is taken relative to the first root. "~" and ".." are refused outright; what is left must
    resolve (symlinks followed) inside a root, itself resolved. The file need not exist yet: ingest calls this
    for every row, and the loader calls it again, and re-checks the file it actually opened, before reading.
    """
    return LocalReferences(roots, remembered_folders=0)(ref)


class LocalReferences:
    """`check_local_reference` for many references against the same roots: ingest checks every row of a file.

    The roots are resolved once, and the real path of each folder the references name is remembered (up to
    `remembered_folders` of them), so a reference costs one `lstat` of its own last part instead of one per part of
    its path: 200,000 rows checked in ~1 s instead of ~25 s. What a folder resolves to may change after it was
    remembered; the loader checks every reference again, uncached, and re-checks the file it opened, before
    reading it (`read_image_bytes`).
    """

    def __init__(self, roots: Sequence[str | os.PathLike[str]], *, remembered_folders: int = 4096) -> None:
        self._roots = list(roots)
        self._bases = [os.path.abspath(os.fspath(root)) for root in self._roots]
        real_bases = [os.path.realpath(base) for base in self._bases]
        self._real_prefixes = [(base, base.rstrip(os.sep) + os.sep) for base in real_bases]  # as _inside
        self._folders: dict[str, tuple[str, frozenset[str] | None]] = {}
        self._remembered = remembered_folders
        self._joinable = os.sep == "/" and os.altsep is None  # the string fast path of normpath(join(...))
        self._base_slash = self._bases[0].rstrip("/") + "/" if self._bases else ""

    def __call__(self, ref: str) -> str:
        """`ref` as an absolute path inside a root, or ImageError saying why not (see check_local_reference)."""
        # Ingest calls this for every row: the usual reference passes each test on its cheapest form, and the
        # message's label is made only for a refusal.
        if not self._roots:
            raise ImageError(f"{_label(ref)}: local image paths are not allowed here (no images root is set)")
        if "\0" in ref:
            raise ImageError(f"{_label(ref)}: path contains a NUL character")
        if ref.startswith("~"):
            raise ImageError(
                f"{_label(ref)}: '~' (a home folder) is not allowed in image paths; use a path in the images root"
            )
        if ".." in ref and ".." in re.split(r"[\\/]", ref):
            raise ImageError(
                f"{_label(ref)}: '..' is not allowed in image paths; use a path in the images root"
            )
        path = self._normalised(ref)
        real, resolved = self._realpath(path)
        if not resolved and os.path.islink(real):  # realpath stops at a link it cannot resolve: a loop
            raise ImageError(f"{_label(ref)}: is a symbolic link that never resolves (a loop)")
        for base, prefix in self._real_prefixes:
            if real == base or real.startswith(prefix):
                return path
        bases = self._bases
        where = "the images root " + bases[0] if len(bases) == 1 else "the images roots " + ", ".join(bases)
        raise ImageError(f"{_label(ref)}: outside {where} (absolute paths and symlinks must stay inside it)")

    def _normalised(self, ref: str) -> str:
        """os.path.normpath(os.path.join(first root, ref)); `ref` has no '..' part (refused before)."""
        if not self._joinable:
            return os.path.normpath(os.path.join(self._bases[0], ref))
        joined = ref if ref.startswith("/") else self._base_slash + ref
        if "//" in joined or "/./" in joined or joined.endswith(("/", "/.")):
            return os.path.normpath(joined)
        return joined  # already normal: normpath would return it unchanged

    def _realpath(self, path: str) -> tuple[str, bool]:
        """(os.path.realpath(path), whether that is known to be no link), with its folder's real path remembered,
        and which of the folder's entries are links, read once for the folder (`os.scandir`) instead of an `lstat`
        per reference."""
        folder, _, name = path.rpartition(os.sep)  # os.path.split without its checks: `path` is normalised
        folder = folder or os.sep
        if not name or not self._remembered:
            return os.path.realpath(path), False
        known = self._folders.get(folder)
        if known is None:
            real_folder = os.path.realpath(folder)
            if os.path.islink(real_folder):  # a loop in the folder: let realpath say where it stops
                return os.path.realpath(path), False
            if len(self._folders) < self._remembered:
                known = self._folders[folder] = (real_folder, _links_in(real_folder))
            else:  # not remembered: one `lstat` for this reference, not a listing of its folder each time
                known = (real_folder, None)
        real_folder, links = known
        candidate = real_folder + name if real_folder.endswith(os.sep) else real_folder + os.sep + name
        # The last part itself may be a link (to anywhere): resolve it as realpath would.
        if (name in links) if links is not None else os.path.islink(candidate):
            return os.path.realpath(candidate), False
        return candidate, True


def _links_in(folder: str) -> frozenset[str] | None:
    """The names of `folder`'s entries that are symbolic links (none where it does not exist), or None where it
    cannot be listed (then each reference is checked with its own `lstat`)."""
    try:
        with os.scandir(folder) as entries:
            return frozenset(entry.name for entry in entries if entry.is_symlink())
    except FileNotFoundError:
        return frozenset()
    except OSError:
        return None


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
        raise ImageError(f"{label}: image is truncated or corrupt ({_safe_reason(e)})") from None
    rgb = _to_rgb(image, label)
    if limits.shortest_side is not None:
        return _fit_shortest_side(rgb, limits.shortest_side)
    if limits.max_side is not None:
        rgb.thumbnail((limits.max_side, limits.max_side))
    return rgb


# --- local files ------------------------------------------------------------------------------------------------


def _read_file(path: str, limits: ImageLimits) -> bytes:
    label = _label(path)
    confined = limits.roots is not None
    flags = (
        os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    )  # a FIFO must not block open
    if confined:
        # Open the resolved path without following a final symlink: one swapped in after the check is refused.
        target = os.path.realpath(check_local_reference(path, limits.roots))
        flags |= getattr(os, "O_NOFOLLOW", 0)
    else:
        target = path
    try:
        fd = os.open(target, flags)
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found") from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageError(f"{label}: became a symbolic link while being opened; refused") from None
        raise ImageError(f"{label}: cannot read file ({_reason(e)})") from None
    except ValueError as e:  # a path with a NUL byte in it
        raise ImageError(f"{label}: cannot read file ({_reason(e)})") from None
    try:
        info = os.fstat(fd)
        if confined:
            _recheck_opened(fd, info, target, limits.roots, label)
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
        data = _read_fd(fd, info.st_size, limits.max_bytes + 1)  # the file may have grown since fstat()
    except OSError as e:
        raise ImageError(f"{label}: cannot read file ({_reason(e)})") from None
    finally:
        os.close(fd)
    if len(data) > limits.max_bytes:
        raise ImageError(f"{label}: file is over the {_size_text(limits.max_bytes)} limit")
    if not data:
        raise ImageError(f"{label}: file is empty (0 bytes)")
    return data


def _recheck_opened(fd: int, info: os.stat_result, target: str, roots: Sequence[Path], label: str) -> None:
    """Refuse if the file opened is not the one checked: a folder on the way may have been swapped meanwhile."""
    try:
        checked = os.stat(target, follow_symlinks=False)
        same = (checked.st_dev, checked.st_ino) == (info.st_dev, info.st_ino)
    except OSError:
        same = False
    proc = f"/proc/self/fd/{fd}"
    if same and os.path.exists(proc):  # Linux names the file an fd really refers to
        opened = os.readlink(proc)
        same = any(_inside(opened, os.path.realpath(root)) for root in roots)
    if not same:
        raise ImageError(f"{label}: the file changed while it was being opened; refused")


def _read_fd(fd: int, expected: int, limit: int) -> bytes:
    """Read up to `limit` bytes; ask for the expected size (plus one, to notice growth) in one call first."""
    chunks, total = [], 0
    want = min(expected + 1, limit)
    while total < limit and (chunk := os.read(fd, want)):
        chunks.append(chunk)
        total += len(chunk)
        want = min(_CHUNK, limit - total)
    return b"".join(chunks)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# --- http(s) ----------------------------------------------------------------------------------------------------


class _DeadlineExceeded(TimeoutError):
    """The total deadline of a download has passed."""


class _Deadline:
    """The one clock a download runs against: every connect, handshake and read gets at most what is left."""

    def __init__(self, limits: ImageLimits) -> None:
        self.total = limits.total_timeout
        self.end = time.monotonic() + limits.total_timeout
        self.read_timeout = limits.read_timeout
        self.connect_timeout = limits.connect_timeout

    def timeout(self, step: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise _DeadlineExceeded("total deadline passed")
        return min(step, left)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end


class _DeadlineSocket(socket.socket):
    """A TCP socket whose every read waits at most `read_timeout` and never past the download's deadline."""

    deadline: _Deadline | None = None

    def recv_into(self, buffer, nbytes=0, flags=0):  # noqa: ANN001, ANN201 -- socket's own signature
        self._arm()
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, bufsize, flags=0):  # noqa: ANN001, ANN201
        self._arm()
        return super().recv(bufsize, flags)

    def _arm(self) -> None:
        if self.deadline is not None:
            self.settimeout(self.deadline.timeout(self.deadline.read_timeout))


class _DeadlineSSLSocket(ssl.SSLSocket):
    """The same for TLS: http.client reads through recv_into; the handshake is bounded by the socket timeout."""

    deadline: _Deadline | None = None

    def recv_into(self, buffer, nbytes=None, flags=0):  # noqa: ANN001, ANN201
        self._arm()
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, buflen=1024, flags=0):  # noqa: ANN001, ANN201
        self._arm()
        return super().recv(buflen, flags)

    _arm = _DeadlineSocket._arm


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()  # verifies certificates and host names
    context.set_alpn_protocols(["http/1.1"])
    context.sslsocket_class = _DeadlineSSLSocket
    return context


_TLS = _tls_context()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connect to the address checked beforehand, never to a fresh DNS answer; Host header and TLS keep the name."""

    def __init__(self, host: str, port: int, *, address: str, deadline: _Deadline) -> None:
        super().__init__(host, port)
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        family = socket.AF_INET6 if ":" in self._address else socket.AF_INET
        sock = _DeadlineSocket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._deadline.timeout(self._deadline.connect_timeout))
            sock.connect((self._address, self.port))
            sock.settimeout(self._deadline.timeout(self._deadline.read_timeout))  # for sending the request
            sock.deadline = self._deadline
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT  # so that the Host header leaves out ":443"

    def connect(self) -> None:
        super().connect()
        # wrap_socket performs the handshake; since Python 3.5 the socket timeout bounds the whole handshake.
        self.sock.settimeout(self._deadline.timeout(self._deadline.connect_timeout))
        self.sock = _TLS.wrap_socket(self.sock, server_hostname=self.host)
        self.sock.deadline = self._deadline


_CONNECTIONS = {"http": _PinnedHTTPConnection, "https": _PinnedHTTPSConnection}


def _download(url: str, limits: ImageLimits) -> bytes:
    label = _label(url)
    deadline = _Deadline(limits)
    allow = limits.allow_list
    current, via = url, ""
    for _ in range(limits.max_redirects + 1):
        connection = None
        try:
            scheme, host, port, target = _split_url(current)
            address = resolve_host(host, port, allow)
            connection = _CONNECTIONS[scheme](host, port, address=address, deadline=deadline)
            connection.request("GET", target, headers=_HEADERS)
            response = connection.getresponse()
            if response.status in _REDIRECTS:
                current = _redirect_target(current, response.getheader("Location"))
                via = f"redirected to {_shown(current)}: "
                continue
            if not 200 <= response.status < 300:
                transient = response.status in (408, 425, 429) or response.status >= 500
                raise ImageError(f"server returned HTTP {_status_text(response.status)}", transient=transient)
            return _read_body(response, label, limits)
        except ImageError as e:
            raise ImageError(f"{label}: {via}{e}", transient=e.transient) from None
        except (OSError, http.client.HTTPException) as e:
            raise _network_error(label, e, limits, deadline) from None
        finally:
            if connection is not None:
                connection.close()
    raise ImageError(f"{label}: more than {limits.max_redirects} redirects")


def _split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http(s) URL, or ImageError for one that cannot be fetched."""
    if re.search(r"[\x00-\x20\x7f]", url):  # a header injection ("\r\nX-Injected: 1") or a bare space
        raise ImageError("invalid URL (URL can't contain control characters or spaces)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        message = str(e)
        reason = "nonnumeric port or port out of range" if "Port" in message else message
        raise ImageError(f"invalid URL ({reason})") from None
    scheme = parts.scheme.lower()
    if scheme not in _URL_SCHEMES:
        raise ImageError(f"unsupported URL scheme {scheme!r}, only http(s)")
    if not parts.hostname:
        raise ImageError("cannot download (no host given)")
    target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), target


def _redirect_target(current: str, location: str | None) -> str:
    """The URL a redirect leads to, refused if it leaves http(s) or drops from https to http."""
    if not location or not location.strip():
        raise ImageError("server sent a redirect without a Location")
    target = urljoin(current, location.strip())
    scheme = urlsplit(target).scheme.lower()
    if scheme not in _URL_SCHEMES:
        raise ImageError(f"server redirected to {_shown(target)}; only redirects to http(s) are followed")
    if scheme == "http" and urlsplit(current).scheme.lower() == "https":
        raise ImageError(
            f"server redirected from https to {_shown(target)}; a downgrade to plain http is refused"
        )
    return target


def _read_body(response: http.client.HTTPResponse, label: str, limits: ImageLimits) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > limits.max_bytes:
        raise ImageError(
            f"server announced {_size_text(int(declared))} (Content-Length), "
            f"over the {_size_text(limits.max_bytes)} limit"
        )
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(_CHUNK):
        if not chunks:
            # An HTML error or login page is answered at once, without downloading the rest; what it says is not
            # repeated: an internal page's title is exactly what must not end up in a stored error.
            markup = _sniff_markup(chunk)
            if markup:
                raise ImageError(f"server returned {markup}, not an image{_content_type(response)}")
        total += len(chunk)
        if total > limits.max_bytes:
            raise ImageError(f"download is over the {_size_text(limits.max_bytes)} limit")
        chunks.append(chunk)
    if not total:
        raise ImageError("server returned an empty response (0 bytes)")
    return b"".join(chunks)


def _network_error(label: str, reason: BaseException, limits: ImageLimits, deadline: _Deadline) -> ImageError:
    """Describe a failure to talk to the server; most are worth retrying later. No response bytes are quoted."""
    if isinstance(reason, _DeadlineExceeded) or (isinstance(reason, TimeoutError) and deadline.expired):
        return ImageError(
            f"{label}: download did not finish within the total deadline of {deadline.total:g} s",
            transient=True,
        )
    if isinstance(reason, TimeoutError):
        return ImageError(
            f"{label}: server did not answer in time (connect timeout {limits.connect_timeout:g} s, "
            f"read timeout {limits.read_timeout:g} s)",
            transient=True,
        )
    if isinstance(reason, ConnectionRefusedError):
        return ImageError(f"{label}: connection refused by the server", transient=True)
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        # RemoteDisconnected is one of these; its text is fixed, not the server's.
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
    if isinstance(reason, http.client.LineTooLong):
        return ImageError(
            f"{label}: server sent an invalid HTTP response (a line is too long)", transient=True
        )
    if isinstance(reason, http.client.BadStatusLine):  # its text is the line received: not repeated
        return ImageError(f"{label}: server did not answer with HTTP (invalid status line)")
    if isinstance(reason, http.client.HTTPException):
        return ImageError(
            f"{label}: server sent an invalid HTTP response ({type(reason).__name__})", transient=True
        )
    return ImageError(f"{label}: network error ({_reason(reason)})", transient=True)


def _status_text(code: int) -> str:
    """The status code with its standard phrase, not the server's own words (which it may fill with anything)."""
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _content_type(response: http.client.HTTPResponse) -> str:
    """' (Content-Type: text/html)' when the header is a plain media type, else nothing: it is the server's text."""
    value = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if re.fullmatch(r"[a-z]{1,20}/[a-z0-9.+-]{1,40}", value):
        return f" (Content-Type: {value})"
    return ""


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
        raise ImageError(f"{label}: colour mode {image.mode} is not supported ({_safe_reason(e)})") from None


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
    return f"image is too large to decode safely (decompression bomb?): {_safe_reason(error)}"


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


def _unrecognised(data: bytes) -> str:
    """Say what kind of data it is, never what it says: a secret file's first line must not reach an error."""
    head = data[:64]
    text = head.decode("utf-8", errors="ignore")
    if len(text) >= 0.9 * len(head) and all(c.isprintable() or c.isspace() for c in text):
        return f"contains text, not an image ({_size_text(len(data))})"
    return (
        f"not a recognised image format (supported: {', '.join(ALLOWED_FORMATS)}); "
        f"got {_size_text(len(data))} of something else"
    )


def _label(ref: str) -> str:
    shown = ref if len(ref) <= 200 else ref[:120] + "…" + ref[-60:]
    return f"image {shown!r}"


def _shown(url: str) -> str:
    return repr(url if len(url) <= 200 else url[:120] + "…" + url[-60:])


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _safe_reason(error: BaseException) -> str:
    """Pillow's explanation when it is plain words and numbers; some of its messages quote the file's bytes."""
    text = str(error)
    if re.fullmatch(r"[A-Za-z0-9 ,.;:()_/-]{1,120}", text):
        return text
    return type(error).__name__


def _pixels_text(pixels: int) -> str:
    if pixels >= 1_000_000:
        return f"{pixels / 1_000_000:.1f}".removesuffix(".0") + " Mpx"
    return f"{pixels:,} px"


def _size_text(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
