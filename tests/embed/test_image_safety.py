"""Image references come from catalogues written by other people: the loader must not read files outside the images
root, reach internal hosts, hang on a slow server, or copy what it read into an error message. Every server here
listens on 127.0.0.1 only and stops at the end of its test or module."""

from __future__ import annotations

import http.server
import io
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from prodmatch.embed import images
from prodmatch.embed.images import (
    ImageLimits,
    LocalReferences,
    check_local_reference,
    load_image,
    read_image_bytes,
)
from prodmatch.embed.netguard import AllowList, parse_allow_list, refusal, resolve_host
from prodmatch.errors import ConfigError, ImageError

SECRET = b"hunter2-db-password\n"


def jpeg(colour: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


GOOD_JPEG = jpeg()
LOCAL = ("127.0.0.1/32",)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """An images root holding a good image, and a secret file beside (outside) it."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.jpg").write_bytes(GOOD_JPEG)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    return root, secret


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# --- local paths are confined to the images root -----------------------------------------------------------------


def test_check_local_reference_keeps_paths_inside_the_root(tree):
    root, _ = tree
    assert check_local_reference("sub/ok.jpg", [root]) == str(root / "sub" / "ok.jpg")
    assert check_local_reference(str(root / "sub" / "ok.jpg"), [root]) == str(root / "sub" / "ok.jpg")
    assert check_local_reference("./sub//later.jpg", [root]) == str(
        root / "sub" / "later.jpg"
    )  # need not exist
    other = root.parent / "other"
    other.mkdir()
    assert check_local_reference(str(other / "x.jpg"), [root, other]) == str(other / "x.jpg")


def refused_references(root: Path, secret: Path) -> dict[str, str]:
    (root / "out-link.jpg").symlink_to(secret)
    (root / "out-dir").symlink_to(secret.parent)
    (root / "loop").symlink_to(root / "loop")
    return {
        str(secret): "outside the images root",
        "/etc/passwd": "outside the images root",
        "/proc/self/environ": "outside the images root",
        "../secret.txt": "'..' is not allowed",
        "sub/../../secret.txt": "'..' is not allowed",
        str(root / "sub" / ".." / ".." / "secret.txt"): "'..' is not allowed",
        "~/.pgpass": "'~' (a home folder) is not allowed",
        "~root/.bashrc": "'~' (a home folder) is not allowed",
        "out-link.jpg": "outside the images root",
        "out-dir/secret.txt": "outside the images root",
        "loop": "symbolic link that never resolves",
        str(root) + "-evil/x.jpg": "outside the images root",  # a sibling whose name starts like the root
    }


def test_check_local_reference_refuses_escapes(tree):
    root, secret = tree
    for ref, reason in refused_references(root, secret).items():
        with pytest.raises(ImageError, match=re.escape(reason)) as raised:
            check_local_reference(ref, [root])
        assert str(raised.value).startswith(f"image {ref!r}: "), ref
    with pytest.raises(ImageError, match="no images root is set"):
        check_local_reference("sub/ok.jpg", [])


def test_remembered_folders_give_the_same_verdicts_as_the_plain_check(tree):
    # Ingest checks every row with LocalReferences, which remembers each folder's real path: same paths, same
    # refusals (the second round is answered from the remembered folders).
    root, secret = tree
    refs = [*refused_references(root, secret), "sub/ok.jpg", "./sub//later.jpg", "loop/x.jpg", "out-dir"]
    refs += [str(root / "sub" / "ok.jpg"), "out-dir/sub/x.jpg", "sub"]
    (root / "in-link.jpg").symlink_to(root / "sub" / "ok.jpg")
    (root / "in-dir").symlink_to(root / "sub")
    refs += ["in-link.jpg", "in-dir/ok.jpg", "in-dir/new.jpg"]
    # forms that are not already normal (the fast path hands them to normpath), and a folder that does not exist
    refs += [
        "sub/./ok.jpg",
        "sub/",
        ".",
        "sub/ok.jpg/.",
        str(root) + "//sub/ok.jpg",
        "./in-link.jpg",
        "none/x.jpg",
    ]

    def verdict(check, ref: str) -> str:
        try:
            return check(ref)
        except ImageError as error:
            return f"refused: {error}"

    expected = {ref: verdict(lambda r: check_local_reference(r, [root]), ref) for ref in refs}
    for remembered in (4096, 1, 0):  # every folder remembered, one (the others checked alone), none
        remembering = LocalReferences([root], remembered_folders=remembered)
        for _ in range(2):
            assert {ref: verdict(remembering, ref) for ref in refs} == expected, remembered
    assert expected["in-dir/new.jpg"] == str(root / "in-dir" / "new.jpg")
    assert expected["out-dir/secret.txt"].startswith("refused")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(["", ".", "a", "b.jpg", "/", "//", "a.b", "...", "é"]), max_size=8).map("/".join)
)
def test_a_reference_is_normalised_as_normpath_of_its_join_to_the_root(ref):
    # LocalReferences skips normpath for a reference already in normal form: the same path either way.
    check = LocalReferences(["/srv/images/"])
    assert check._normalised(ref) == os.path.normpath(os.path.join("/srv/images", ref))
    assert check._normalised("/" + ref) == os.path.normpath(os.path.join("/srv/images", "/" + ref))


def test_loader_refuses_escapes_and_reads_nothing(tree):
    root, secret = tree
    limits = ImageLimits(roots=(root,))
    for ref, reason in refused_references(root, secret).items():
        with pytest.raises(ImageError, match=re.escape(reason)) as raised:
            load_image(ref, limits)
        assert "hunter2" not in str(raised.value)
    with pytest.raises(ImageError, match="no images root is set"):
        load_image(str(root / "sub" / "ok.jpg"), ImageLimits(roots=()))


def test_loader_reads_inside_the_root_through_inner_symlinks(tree):
    root, _ = tree
    (root / "alias.jpg").symlink_to(root / "sub" / "ok.jpg")
    limits = ImageLimits(roots=(root,))
    for ref in ("sub/ok.jpg", str(root / "sub" / "ok.jpg"), "alias.jpg"):
        assert read_image_bytes(ref, limits) == GOOD_JPEG
        assert load_image(ref, limits).size == (16, 12)


def test_symlink_swapped_in_after_the_check_is_not_followed(tree, monkeypatch):
    """Between resolving and opening, the file turns into a symlink to the secret: O_NOFOLLOW refuses to open it."""
    root, secret = tree
    (root / "swapped.jpg").write_bytes(GOOD_JPEG)
    real_open = os.open

    def swap_then_open(path, flags, *args, **kwargs):
        if str(path) == str(root / "swapped.jpg"):
            os.unlink(path)
            os.symlink(secret, path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(ImageError, match="became a symbolic link while being opened") as raised:
        read_image_bytes("swapped.jpg", ImageLimits(roots=(root,)))
    assert "hunter2" not in str(raised.value)


def test_folder_swapped_after_the_check_is_caught_on_the_opened_file(tree, monkeypatch):
    """A folder on the way is replaced by a symlink out of the root right after the check: the fd is re-checked."""
    root, secret = tree
    (root / "cat").mkdir()
    (root / "cat" / "secret.txt").write_bytes(b"decoy")
    real_check = images.check_local_reference

    def check_then_swap(ref, roots):
        path = real_check(ref, roots)
        (root / "cat" / "secret.txt").unlink()
        (root / "cat").rmdir()
        (root / "cat").symlink_to(secret.parent)
        return path

    monkeypatch.setattr(images, "check_local_reference", check_then_swap)
    with pytest.raises(ImageError, match="changed while it was being opened") as raised:
        read_image_bytes("cat/secret.txt", ImageLimits(roots=(root,)))
    assert "hunter2" not in str(raised.value)


def test_fifo_in_the_root_is_refused_without_blocking(tree):
    root, _ = tree
    os.mkfifo(root / "pipe.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        read_image_bytes("pipe.jpg", ImageLimits(roots=(root,)))


# --- error messages say what kind of thing it was, never what it said --------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (SECRET, r"contains text, not an image \(20 bytes\)"),
        (b"root:*:20228:0:99999:7:::\ndaemon:*:20228:hunter2\n", "contains text, not an image"),
        (b"GIF89a" + b"hunter2" * 10, "contains text, not an image"),
        (b"<html><head><title>Jenkins hunter2</title></head></html>", "contains HTML, not an image"),
        (bytes(range(128, 256)) + b"hunter2", r"not a recognised image format .*135 bytes of something else"),
    ],
    ids=["secret", "shadow", "gif-magic-then-text", "html", "binary"],
)
def test_file_errors_do_not_quote_the_file(tree, data, kind):
    root, _ = tree
    (root / "x.jpg").write_bytes(data)
    with pytest.raises(ImageError, match=kind) as raised:
        load_image("x.jpg", ImageLimits(roots=(root,)))
    assert "hunter2" not in str(raised.value) and "root:" not in str(raised.value)


# --- a recording HTTP server on 127.0.0.1 -------------------------------------------------------------------------

SEEN: list[tuple[str, str]] = []  # (path, Host header) of every request the server received


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        SEEN.append((self.path, self.headers.get("Host", "")))
        route = self.path.split("?")[0]
        if route == "/good.jpg":
            self.reply(200, GOOD_JPEG, "image/jpeg")
        elif route == "/page.html":
            self.reply(
                200, b"<!DOCTYPE html><title>Jenkins - internal hunter2</title>", "text/html; x=hunter2"
            )
        elif route == "/redirect":
            self.redirect(parse_qs(urlsplit(self.path).query)["to"][0])
        elif route == "/loop":
            self.redirect("/loop")
        else:
            self.reply(404, b"hunter2", "text/plain")

    def reply(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fresh_log():
    SEEN.clear()


def redirect(server: str, location: str) -> str:
    """A URL on the test server that answers 302 to `location`."""
    return f"{server}/redirect?{urlencode({'to': location})}"


def test_loopback_server_is_refused_by_default_and_reachable_when_allowed(server):
    with pytest.raises(ImageError, match=r"is a loopback address.*PRODMATCH_IMAGE_ALLOW") as raised:
        load_image(server + "/good.jpg")
    assert raised.value.transient is False
    assert SEEN == []  # refused before connecting
    assert load_image(server + "/good.jpg", ImageLimits(allowed_networks=LOCAL)).size == (16, 12)
    assert load_image(server + "/good.jpg", ImageLimits(allowed_hosts=("127.0.0.1",))).size == (16, 12)
    assert len(SEEN) == 2


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/a.jpg", "private"),
        ("http://127.0.0.2/a.jpg", "loopback"),  # loopback, but outside the allowed 127.0.0.1/32
        ("http://2130706433/a.jpg", "non-standard numeric form"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "loopback address inside an IPv6 address"),
    ],
)
def test_redirect_from_an_allowed_server_to_a_refused_address_is_refused(server, target, reason):
    url = redirect(server, target)
    with pytest.raises(ImageError, match=reason) as raised:
        load_image(url, ImageLimits(allowed_networks=LOCAL))
    assert f"redirected to {target!r}" in str(raised.value)
    assert len(SEEN) == 1  # only the first hop was fetched


def test_redirect_chain_is_capped(server):
    with pytest.raises(ImageError, match="more than 5 redirects"):
        load_image(server + "/loop", ImageLimits(allowed_networks=LOCAL))
    assert len(SEEN) == 6


def test_https_to_http_downgrade_is_refused(server, monkeypatch):
    # Stand-in for a TLS server: the https connection class speaks plain HTTP to the test server, so the redirect
    # logic sees a real https URL answered with a real 302.
    monkeypatch.setitem(images._CONNECTIONS, "https", images._PinnedHTTPConnection)
    https = server.replace("http://", "https://")
    limits = ImageLimits(allowed_networks=LOCAL)
    assert read_image_bytes(redirect(https, "/good.jpg"), limits) == GOOD_JPEG  # https -> https is followed
    assert [path for path, _ in SEEN][-1] == "/good.jpg"
    SEEN.clear()
    with pytest.raises(ImageError, match="a downgrade to plain http is refused"):
        read_image_bytes(redirect(https, server + "/good.jpg"), limits)
    assert len(SEEN) == 1  # the plain-http hop was never requested


def test_html_page_and_status_text_are_not_repeated(server):
    limits = ImageLimits(allowed_networks=LOCAL)
    with pytest.raises(
        ImageError, match=r"server returned HTML, not an image \(Content-Type: text/html\)$"
    ) as e:
        load_image(server + "/page.html", limits)
    assert "Jenkins" not in str(e.value) and "hunter2" not in str(e.value)
    with pytest.raises(ImageError, match=r"server returned HTTP 404 Not Found$"):
        load_image(server + "/nothing", limits)


# --- numeric hosts and DNS answers ---------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Fail any DNS lookup or connection attempt; return the log of attempts."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network used: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f000001",
        "0x7f.0.0.1",
        "127.1",
        "017700000001",
        "0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::ffff:a9fe:a9fe]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a00:1::]",
        "169.254.169.254",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "[::]",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "[fe80::1]",
        "[fe80::1%25eth0]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[ff02::1]",
    ],
)
def test_internal_and_numeric_hosts_are_refused_without_any_network_use(no_network, host):
    with pytest.raises(ImageError, match=r"is (a|an|the) .*address|non-standard numeric form") as raised:
        load_image(f"http://{host}:8080/a.jpg")
    assert raised.value.transient is False
    assert no_network == []


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    import ipaddress

    assert refusal(ipaddress.ip_address(address)) is None


def fake_dns(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """Answer getaddrinfo for the named hosts from `answers`, one list entry per call (the last one repeats)."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        queue = answers[host]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_names_that_resolve_inside_are_refused(monkeypatch):
    fake_dns(monkeypatch, {"intranet.example": ["10.1.2.3"], "meta.example": ["169.254.169.254"]})
    for host, reason in (
        ("intranet.example", "resolves to a private address"),
        ("meta.example", "link-local"),
    ):
        with pytest.raises(ImageError, match=reason) as raised:
            load_image(f"http://{host}/a.jpg")
        assert "10.1.2.3" not in str(raised.value)  # internal DNS is not mapped for readers of errors


def test_the_checked_address_is_the_one_connected_to(server, monkeypatch):
    """DNS rebinding: the name is resolved once, and the connection goes to that answer with the original Host."""
    port = server.rsplit(":", 1)[1]
    asked = fake_dns(monkeypatch, {"cdn.test": ["127.0.0.1", "10.0.0.1"]})
    limits = ImageLimits(allowed_networks=LOCAL)
    assert read_image_bytes(f"http://cdn.test:{port}/good.jpg", limits) == GOOD_JPEG
    assert asked == ["cdn.test"]
    assert [("/good.jpg", f"cdn.test:{port}")] == SEEN  # the Host header keeps the name

    SEEN.clear()
    asked = fake_dns(monkeypatch, {"rebind.test": ["10.0.0.1", "127.0.0.1"]})
    with pytest.raises(ImageError, match="resolves to a private address"):
        read_image_bytes(f"http://rebind.test:{port}/good.jpg", limits)
    assert asked == ["rebind.test"] and SEEN == []


def test_allowed_host_names_may_resolve_inside(server, monkeypatch):
    port = server.rsplit(":", 1)[1]
    fake_dns(monkeypatch, {"img.cdn.internal": ["127.0.0.1"]})
    with pytest.raises(ImageError, match="loopback"):
        read_image_bytes(f"http://img.cdn.internal:{port}/good.jpg")
    limits = ImageLimits(allowed_hosts=("*.cdn.internal",))
    assert read_image_bytes(f"http://img.cdn.internal:{port}/good.jpg", limits) == GOOD_JPEG


def test_a_name_with_one_internal_address_is_refused(monkeypatch):
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 80)) for a in ("93.184.216.34", "127.0.0.1")]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers)
    with pytest.raises(ImageError, match="loopback"):
        resolve_host("mixed.example", 80)
    assert resolve_host("mixed.example", 80, AllowList(networks=("127.0.0.0/8",))) == "93.184.216.34"


def test_allow_list_format():
    allow = parse_allow_list(" 10.1.0.0/16, cdn.internal ;*.img.corp, fd00::/8,, 127.0.0.1")
    assert allow == AllowList(
        networks=("10.1.0.0/16", "fd00::/8", "127.0.0.1"), hosts=("cdn.internal", "*.img.corp")
    )
    assert allow.allows_host("CDN.internal.") and allow.allows_host("a.b.img.corp")
    assert not allow.allows_host("img.corp") and not allow.allows_host("evilcdn.internal")
    with pytest.raises(ConfigError, match="PRODMATCH_IMAGE_ALLOW: 'http://x' is neither"):
        parse_allow_list("http://x")
    with pytest.raises(ConfigError, match="allow-list"):
        ImageLimits(allowed_networks=("10.1.0.0/33",))


# --- raw servers: slow-loris and things that are not HTTP --------------------------------------------------------


@contextmanager
def raw_server(script: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that reads the request, then runs `script` on the connection; stops on exit."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def run(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                script(conn, stop)
            except OSError:
                pass  # the client hung up, as it should

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=run, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def dribble(data: bytes, pause: float = 0.5) -> Callable[[socket.socket, threading.Event], None]:
    def script(conn: socket.socket, stop: threading.Event) -> None:
        for i in range(len(data)):
            if stop.is_set():
                return
            conn.sendall(data[i : i + 1])
            stop.wait(pause)

    return script


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n" + b"\xff" * 1000,
        b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 1000,  # headers that never end
    ],
    ids=["body", "headers"],
)
def test_slow_loris_is_cut_off_at_the_total_deadline(response):
    headers, _, body = response.partition(b"\r\n\r\n")

    def script(conn: socket.socket, stop: threading.Event) -> None:
        if body:
            conn.sendall(headers + b"\r\n\r\n")
            dribble(body)(conn, stop)
        else:
            dribble(headers)(conn, stop)

    limits = ImageLimits(total_timeout=2.0, read_timeout=15.0, connect_timeout=15.0, allowed_networks=LOCAL)
    with raw_server(script) as url:
        started = time.monotonic()
        with pytest.raises(ImageError, match=r"did not finish within the total deadline of 2 s") as raised:
            load_image(url + "/slow.jpg", limits)
        elapsed = time.monotonic() - started
    # Cut at the 2 s deadline: never before it, and long before the 15 s read timeout or the 500 s of dribble would
    # end it (the upper margin is for a busy 2-core machine, where a thread may wait seconds for the CPU).
    assert 1.9 <= elapsed < 10, elapsed
    assert raised.value.transient is True


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"SSH-2.0-OpenSSH_9.6 hunter2\r\n", "did not answer with HTTP"),
        (b"HTTP/1.0 404 hunter2 secret\r\nContent-Length: 7\r\n\r\nhunter2", r"HTTP 404 Not Found$"),
        (b"HTTP/1.0 599 hunter2\r\nContent-Length: 0\r\n\r\n", r"HTTP 599$"),
        (
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhunter2-db-password",
            r"contains text.*\(19 bytes\)",
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Type: hunter2/x y\r\n\r\n<html>hunter2</html>",
            "returned HTML, not an image$",
        ),
    ],
    ids=["ssh-banner", "reason-phrase", "unknown-status", "text-body", "odd-content-type"],
)
def test_responses_are_described_not_quoted(answer, expected):
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(answer)

    with raw_server(script) as url, pytest.raises(ImageError, match=expected) as raised:
        load_image(url + "/a.jpg", ImageLimits(allowed_networks=LOCAL))
    assert "hunter2" not in str(raised.value) and "OpenSSH" not in str(raised.value)
