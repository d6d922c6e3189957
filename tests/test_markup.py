"""Web markup in product text: read as the text it stands for, by every reader of product text."""

import math

import pytest

from prodmatch.embed.codes import extract_codes
from prodmatch.embed.lexical import LexicalEncoder, normalize
from prodmatch.embed.text import render_text
from prodmatch.markup import plain
from prodmatch.match.signals import brand, colours, text


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("Black &amp; Decker", "Black & Decker"),
        ("18&nbsp;V", "18\u00a0V"),
        ("27&#8221; &#x201C;Pro&#x201D;", "27” “Pro”"),
        ("Tom &amp;amp; Jerry", "Tom & Jerry"),  # escaped twice over
        ("<p>Kettle <b>1.7 l</b></p><br/>", " Kettle  1.7 l   "),
        ('<span class="x">Red</span><!-- note -->', " Red  "),
        ("USB <-> HDMI, a < b, <5 mm", "USB <-> HDMI, a < b, <5 mm"),  # no tags
        ("AT&T, R&B, Salt&Pepper", "AT&T, R&B, Salt&Pepper"),  # no entities
        ("", ""),
    ],
)
def test_plain_reads_entities_and_drops_tags(written, read):
    assert plain(written) == read


def test_every_reader_of_product_text_reads_it_plain():
    marked = "<b>Black &amp; Decker</b> drill 18&nbsp;V 27&#8221; &quot;Pro&quot;"
    same = 'Black & Decker drill 18 V 27\u201d "Pro"'
    assert (
        normalize(marked) == normalize(same) == "black decker drill 18v 27in pro"
    )  # ” after a number: inches
    assert text._words(marked) == text._words(same)
    assert 8221.0 not in text._numbers(marked) and 27.0 in text._numbers(marked)
    agree, conflict = text.numbers_agreement([marked], ["drill 18 V"])
    assert agree[0] == 1.0 and conflict[0] == 0.0
    assert brand.brand_names("Black &amp; Decker") == brand.brand_names("Black & Decker") == ("blackdecker",)
    assert (
        colours.text_colours("<b>Red</b> &amp; black")
        == colours.text_colours("Red & black")
        == {"red", "black"}
    )
    encoder = LexicalEncoder()
    assert encoder.terms({"title": marked}) == encoder.terms({"title": same})
    description = "<p>" * 300 + "Model PS-LX350H"  # the code after 900 characters of tags
    assert extract_codes({"title": "Turntable", "description": description}) == extract_codes(
        {"title": "Turntable", "description": "Model PS-LX350H"}
    )
    assert render_text("{title} {brand}", {"title": marked, "brand": "B&amp;D"}) == (
        'Black & Decker drill 18 V 27” "Pro" B&D'
    )
    assert not math.isnan(text.token_jaccard([marked], [same])[0])
    assert text.token_jaccard([marked], [same])[0] == 1.0
