"""When prodmatch.matches has the learned matcher's columns (lexical_similarity, match_probability, accepted), the
review app uses them: the queue asks about the pairs nearest the threshold, Browse filters on `accepted`, the
export picks pairs by probability. Without them (the other tests) it falls back to the cosine columns."""

from __future__ import annotations

import re

from review_world import tiny_run
from starlette.testclient import TestClient

from prodmatch.review import ReviewOptions, create_app, export_run


def _with_matcher_columns(conn, ids) -> tuple[int, int]:
    """Score every pair as a matcher run would (migration 0005 added the columns); returns the pair set at 0.5."""
    conn.execute(
        "UPDATE prodmatch.matches SET lexical_similarity = 0.25, match_probability = 0.97,"
        " accepted = (source_product_id = %s)",
        (ids["shop-1"],),
    )
    doubtful = (ids["shop-2"], ids["rival-0"])
    conn.execute(
        "UPDATE prodmatch.matches SET match_probability = 0.5 WHERE source_product_id = %s AND target_product_id = %s",
        doubtful,
    )
    conn.commit()
    return doubtful


def test_the_learned_matchers_columns_are_used_when_present(settings, conn, tmp_path):
    ids = tiny_run(conn)
    doubtful = _with_matcher_columns(conn, ids)
    client = TestClient(create_app(settings, ReviewOptions(random_share=0.0)), base_url="http://127.0.0.1")
    page = client.get("/label").text
    shown = tuple(int(x) for x in re.search(r'data-source="(\d+)" data-target="(\d+)"', page).groups())
    assert shown == doubtful
    assert 'id="probability">50%' in page and "0.250" in page  # probability and lexical signal on the page
    browse = client.get("/browse?status=accepted").text
    assert "4 pairs match the filters" in browse  # shop-1's four candidates are the accepted ones
    assert browse.count("shop · shop-1 ·") == 4
    result = export_run(conn, tmp_path, limit=1)
    html = (tmp_path / "index.html").read_text()
    assert result.pairs == 1 and "match probability" in html and "P(match)" in html and "50%" in html
