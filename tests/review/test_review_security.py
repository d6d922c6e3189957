"""The review app's guards, through Starlette's TestClient (nothing listens on a network address): the token on a
non-local bind, CSRF and same-origin checks on POST, local Host headers only, thumbnails only of stored images,
and errors as pages."""

from __future__ import annotations

import dataclasses
import re

import pytest
from PIL import Image
from review_world import tiny_run
from starlette.testclient import TestClient

from prodmatch.errors import ProdmatchError
from prodmatch.review import ReviewOptions, create_app

LOCAL = "http://127.0.0.1:8000"


@pytest.fixture
def world(settings, conn, tmp_path):
    Image.new("RGB", (64, 48), "teal").save(tmp_path / "shop-0.png")
    return tiny_run(
        conn, images={"shop-0": str(tmp_path / "shop-0.png"), "shop-1": str(tmp_path / "gone.png")}
    )


def _client(settings, **options) -> TestClient:
    host = options.get("host", "127.0.0.1")
    base = LOCAL if host == "127.0.0.1" else "http://192.0.2.10:8000"
    return TestClient(create_app(settings, ReviewOptions(**options)), base_url=base, follow_redirects=False)


def _post(client: TestClient, path: str, data: dict, origin: str | None = "own", with_csrf: bool = True):
    client.get("/login")  # any page sets the CSRF cookie
    headers = {"origin": str(client.base_url).rstrip("/")} if origin == "own" else {}
    if origin not in ("own", None):
        headers["origin"] = origin
    if with_csrf:
        data = {**data, "csrf": client.cookies.get("pm_csrf")}
    return client.post(path, data=data, headers=headers)


def test_a_non_local_bind_demands_the_token(settings, world):
    with pytest.raises(ProdmatchError, match="token"):
        create_app(settings, ReviewOptions(host="0.0.0.0"))
    client = _client(settings, host="0.0.0.0", token="s3cret-token")
    page = client.get("/label")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/label"
    assert client.get(f"/thumb/{world['shop-0']}").status_code == 303
    assert _post(client, "/label", {"label": "match"}).status_code == 401
    login = client.get("/login?next=/browse")
    assert login.status_code == 200 and 'name="token"' in login.text
    wrong = _post(client, "/login", {"token": "guess", "next": "/browse"})
    assert wrong.status_code == 403 and "not the one this server printed" in wrong.text
    right = _post(client, "/login", {"token": "s3cret-token", "next": "/browse", "name": "Ann <b>"})
    assert right.status_code == 303 and right.headers["location"] == "/browse"
    assert "s3cret-token" not in right.headers["set-cookie"]
    page = client.get("/label")
    assert page.status_code == 200 and "labelling as <strong>Ann b</strong>" in page.text
    offsite = _post(client, "/login", {"token": "s3cret-token", "next": "//evil.example/"})
    assert offsite.headers["location"] == "/label"


def test_the_local_app_needs_no_token_but_answers_only_to_local_host_names(settings, world):
    client = _client(settings)
    assert client.get("/label").status_code == 200
    rebound = client.get("/label", headers={"host": "attacker.example"})
    assert rebound.status_code == 421 and "only to 127.0.0.1" in rebound.text


def test_posts_need_the_csrf_token_and_the_same_origin(settings, conn, world):
    client = _client(settings)
    pair = {"label": "match", "source": str(world["shop-0"]), "target": str(world["rival-0"])}
    assert _post(client, "/label", pair, with_csrf=False).status_code == 403
    assert _post(client, "/label", pair, origin="https://evil.example").status_code == 403
    assert _post(client, "/label", pair, origin=None).status_code == 403  # neither Origin nor Referer
    assert _post(client, "/undo", {}, with_csrf=False).status_code == 403
    assert conn.execute("SELECT count(*) FROM prodmatch.labels").fetchone()[0] == 0
    done = _post(client, "/label", pair)
    assert done.status_code == 303
    referer = client.post(
        "/label",
        data={**pair, "label": "non-match", "csrf": client.cookies["pm_csrf"]},
        headers={"referer": LOCAL + "/label"},
    )
    assert referer.status_code == 303
    assert conn.execute("SELECT label, is_current FROM prodmatch.labels ORDER BY id").fetchall() == [
        ("match", False),
        ("non-match", True),
    ]
    headers = client.get("/label").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_thumbnails_come_only_from_a_products_stored_image(settings, world, tmp_path):
    # The products were written with plain SQL (no ingest run names their folder): the images root is configured.
    client = _client(dataclasses.replace(settings, image_roots=(tmp_path.resolve(),)))
    thumb = client.get(f"/thumb/{world['shop-0']}?size=96")
    assert thumb.status_code == 200 and thumb.headers["content-type"] in ("image/png", "image/jpeg")
    for path in (
        f"/thumb/{world['rival-0']}",  # no stored image
        f"/thumb/{world['shop-1']}",  # stored, but the file is gone
        "/thumb/999999",
        "/thumb/..%2F..%2Fetc%2Fpasswd",
        "/thumb?path=/etc/passwd",
        "/thumb/%2Fetc%2Fpasswd",
        "/static/..%2Fapp.py",
        "/static/app.py",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "root:" not in response.text and "import" not in response.text


@pytest.mark.parametrize(
    "path,status,words",
    [
        ("/product/999999", 404, "no product with id 999999"),
        ("/browse?min=abc", 400, "min must be a number"),
        ("/label?source=1&target=x", 400, "target must be a whole number"),
        ("/no/such/page", 404, "Not found"),
    ],
)
def test_errors_are_pages_not_tracebacks(settings, world, path, status, words):
    response = _client(settings).get(path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert words in response.text and "Traceback" not in response.text


def test_a_bug_is_a_500_page_with_no_details(settings, world, monkeypatch):
    from prodmatch.review import data

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(data, "browse", broken)
    client = TestClient(create_app(settings, ReviewOptions()), base_url=LOCAL, raise_server_exceptions=False)
    response = client.get("/browse")
    assert response.status_code == 500 and "secret internals" not in response.text
    assert "Server error" in response.text


def test_thumbnails_are_cached_least_recently_used_first(tmp_path):
    from prodmatch.review.thumbs import ThumbnailCache

    refs = []
    for i, colour in enumerate(("red", "green", "blue")):
        Image.new("RGB", (300, 200), colour).save(tmp_path / f"{i}.png")
        refs.append(str(tmp_path / f"{i}.png"))
    cache = ThumbnailCache(capacity=2, roots=(tmp_path.resolve(),))
    first = cache.get(refs[0], 90)
    assert cache.get(refs[0], 96) is first  # sizes round up to the next standard size: one entry
    with Image.open(__import__("io").BytesIO(first.content)) as image:
        assert image.size == (96, 64) and first.media_type in ("image/png", "image/jpeg")
    cache.get(refs[1], 96)
    cache.get(refs[0], 96)  # refs[0] is now the most recent
    cache.get(refs[2], 96)  # evicts refs[1]
    assert len(cache) == 2
    (tmp_path / "1.png").unlink()
    with pytest.raises(ProdmatchError, match="file not found"):
        cache.get(refs[1], 96)
    assert cache.get(refs[0], 96) is first


def test_two_people_labelling_at_once_are_shown_different_pairs(settings, conn):
    tiny_run(conn, n=2)  # 4 pairs
    app = create_app(settings, ReviewOptions())
    shown = []
    for name in ("ann", "bob", "cid", "dee", "eve"):
        client = TestClient(app, base_url=LOCAL, cookies={"pm_user": name})
        page = client.get("/label").text
        shown.append(re.search(r'data-source="(\d+)" data-target="(\d+)"', page).groups())
    assert len(set(shown[:4])) == 4  # everyone gets a pair of their own while there are enough
    assert shown[4] in shown[:4]  # the fifth gets one of those rather than "all labelled"
    again = TestClient(app, base_url=LOCAL, cookies={"pm_user": "ann"}).get("/label").text
    assert re.search(r'data-source="(\d+)" data-target="(\d+)"', again).groups() == shown[0]


def test_undo_of_an_answer_outside_the_run_goes_back_to_the_queue(settings, conn):
    from prodmatch.review import record_label

    ids = tiny_run(conn, n=2)
    record_label(conn, ids["shop-0"], ids["shop-1"], "non-match", "ann")  # a pair no run holds
    client = _client(settings, user="ann")
    undone = _post(client, "/undo", {})
    assert undone.status_code == 303 and undone.headers["location"] == "/label"
    assert conn.execute("SELECT count(*) FROM prodmatch.labels").fetchone()[0] == 0
    conn.commit()
    record_label(conn, ids["shop-0"], ids["rival-1"], "match", "ann")
    again = _post(client, "/undo", {})
    assert again.headers["location"] == f"/label?source={ids['shop-0']}&target={ids['rival-1']}"
