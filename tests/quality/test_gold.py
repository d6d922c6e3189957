"""The one gold-file reader (prodmatch.quality.gold), as `eval --gold` and `finetune --gold` both read it."""

from __future__ import annotations

import pytest

from prodmatch.errors import ConfigError
from prodmatch.quality.gold import GoldPair, read_gold, read_gold_file


def test_header_optional_any_order_any_delimiter_and_label_words(tmp_path):
    with_header = tmp_path / "a.csv"
    with_header.write_text(
        "\ufefflabel;target_id;target_catalog;source_id;source_catalog\n"
        "yes;r-1;rival;s-1;shop\n\n"
        "false;r-2;rival;s-2;shop\n"
        ";r-3;rival;s-3;shop\n",
        encoding="utf-8",
    )
    without_header = tmp_path / "b.tsv"
    without_header.write_text(
        "shop\ts-1\trival\tr-1\tTRUE\nshop\ts-2\trival\tr-2\t0\nshop\ts-3\trival\tr-3\n"
    )
    expected = [("s-1", "r-1", 1), ("s-2", "r-2", 0), ("s-3", "r-3", 1)]
    for path in (with_header, without_header):
        pairs = read_gold(path)
        assert [(p.source_id, p.target_id, p.label) for p in pairs] == expected
        assert {(p.source_catalog, p.target_catalog) for p in pairs} == {("shop", "rival")}
    assert [p.line for p in read_gold(with_header)] == [2, 4, 5]
    assert read_gold(without_header)[0] == GoldPair(1, "shop", "s-1", "rival", "r-1", 1)


def test_every_unusable_line_is_named_with_its_file_line_and_field(tmp_path):
    path = tmp_path / "gold.csv"
    path.write_text(
        "shop,s-1,rival,r-1\nshop,,rival,r-2\nshop,s-3,rival,r-3,maybe\nshop,s-4\nshop,s-5,rival,r-5,1,x\n"
    )
    gold = read_gold_file(path)
    assert [p.line for p in gold.pairs] == [1]
    assert gold.problems == {
        2: f"{path}:2: empty field source_id in 'shop,,rival,r-2'",
        3: f"{path}:3: label must be 1 (same product) or 0, got 'maybe'",
        4: f"{path}:4: expected source_catalog,source_id,target_catalog,target_id,label (label optional),"
        " got 'shop,s-4'",
        5: f"{path}:5: expected source_catalog,source_id,target_catalog,target_id,label (label optional),"
        " got 'shop,s-5,rival,r-5,1,x'",
    }
    with pytest.raises(ConfigError, match=f"{path}:2: empty field source_id"):
        read_gold(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "source_catalog,source_id,target\nshop,s-1,rival\n",
            r"gold.csv:1: missing column\(s\) target_catalog",
        ),
        ("", "no gold pairs"),
        (b"\xff\xfe\x00bad", "cannot read gold file"),
    ],
)
def test_a_file_that_cannot_be_used_at_all_raises(tmp_path, content, message):
    path = tmp_path / "gold.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=message):
        read_gold(path)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_gold_file(tmp_path / "nope.csv")
