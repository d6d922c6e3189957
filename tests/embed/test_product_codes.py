"""Product codes: extraction and normalisation, GS1 check digits, agreement and conflict between products."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prodmatch.embed.codes import code_kind, compare_codes, extract_codes, gtin_check_digit_ok, normalize_gtin


@pytest.mark.parametrize(
    "title",
    [
        "Sony PS-LX350H turntable",
        "sony ps lx350h turntable",
        "Sony PS LX-350 H",
        "SONY PSLX350H",
        "ps/lx350h",
    ],
)
def test_code_spellings_normalise_to_one_code(title):
    assert extract_codes({"title": title}) == ["PSLX350H"]


@pytest.mark.parametrize(
    ("title", "code"),
    [
        ("Sony WH-1000XM4 headphones", "WH1000XM4"),
        ("Logitech MX 518 gaming mouse", "MX518"),
        ("TP-LINK 8-Port Switch (TL-SF1008D)", "TLSF1008D"),
        ("Apple iPad mini MK9P2LL/A", "MK9P2LLA"),
        ("Benq monitor 9H.LF4LB.DBE", "9HLF4LBDBE"),
    ],
)
def test_codes_in_titles(title, code):
    assert code in extract_codes({"title": title})


def test_cyrillic_look_alike_letters_in_codes_become_latin():
    cyrillic = extract_codes({"title": "Чайник КМ-500Х"})  # К, М and Х typed in Cyrillic
    assert cyrillic == extract_codes({"title": "Kettle KM-500X"}) == ["KM500X"]


@pytest.mark.parametrize(
    "text",
    [
        "500GB",
        "8W",
        "40mm",
        "1080p",
        "2x",
        "2019",
        "8 Вт",
        "40мм",
        "1,5 л",
        "12",
        "DDR4",
        "USB 3.0",
        "240-pin",
        "2x4GB",
        "84x84",
        "5000mAh",
        '27"',
        "i7",
        "A52",
    ],
)
def test_units_sizes_years_and_short_tokens_are_not_codes(text):
    assert extract_codes({"title": f"Sony thing {text} black"}) == []


def test_attributes_give_codes_and_plain_numbers_count_there():
    product = {
        "title": "Screen",
        "attributes": {"Model Number": "85303", "артикул": "ab-12cd", "url": "https://x/123abc9"},
        "mpn": "PS-LX350H",
    }
    assert extract_codes(product) == ["PSLX350H", "85303", "AB12CD"]


def test_gtin_check_digits():
    assert gtin_check_digit_ok("4006381333931")  # EAN-13
    assert gtin_check_digit_ok("036000291452")  # UPC-A
    assert gtin_check_digit_ok("96385074")  # GTIN-8
    assert not gtin_check_digit_ok("4006381333932")
    assert not gtin_check_digit_ok("40063813339")  # 11 digits: no GTIN length
    assert not gtin_check_digit_ok("40063813339a1")
    assert normalize_gtin("036000291452") == normalize_gtin("0036000291452") == "00036000291452"
    assert normalize_gtin("4006381333932") is None


@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_exactly_one_check_digit_is_valid_for_any_body(body):
    valid = [d for d in "0123456789" if gtin_check_digit_ok(body + d)]
    assert len(valid) == 1


def test_upc_and_its_ean13_form_are_the_same_gtin_and_wrong_check_digits_are_dropped():
    upc = extract_codes({"title": "Soup", "upc": "036000291452"})
    ean = extract_codes({"title": "Soup", "attributes": {"EAN": "0036000291452"}})
    assert upc == ean == ["gtin:00036000291452"]
    assert extract_codes({"title": "Soup", "gtin": "0036000291453"}) == []
    assert extract_codes({"title": "Soup 4006381333932"}) == []
    assert extract_codes({"title": "Soup (EAN 4006381333931)"}) == ["gtin:04006381333931"]
    assert compare_codes(upc, ean) == (True, False)


def test_codes_in_the_description_count_and_repeat_once():
    product = {
        "title": "Sony PS-LX350H",
        "description": "The PS-LX350H belt-drive turntable. EAN 4006381333931",
    }
    assert extract_codes(product) == ["PSLX350H", "gtin:04006381333931"]


def test_compare_codes_agree_conflict_and_neither():
    assert compare_codes(["PSLX350H"], ["PSLX350H", "B00TSUGXKE"]) == (True, False)
    # Same maker, same pattern and length, another code: a look-alike.
    assert compare_codes(["PSLX350H"], ["PSLX300H"]) == (False, True)
    assert compare_codes(["gtin:00036000291452"], ["gtin:04006381333931"]) == (False, True)
    # A shop's SKU against a maker's MPN: different kinds, no evidence either way.
    assert compare_codes(["B00TSUGXKE"], ["SV98LN"]) == (False, False)
    assert compare_codes(["gtin:00036000291452"], ["PSLX350H"]) == (False, False)
    assert compare_codes([], ["PSLX350H"]) == (False, False)
    assert code_kind("PSLX350H") == "ADA:8" and code_kind("gtin:00036000291452") == "gtin"
