"""Product text as a person reads it: HTML entities decoded and tags dropped, before anything compares it.

Shop exports and scraped offers carry web markup in their text: `Black &amp; Decker`, `18&nbsp;V`,
`&#8220;Pro&#8221;`, descriptions in `<p>...</p>`. Read as written, `&amp;` is a word "amp", `&#8220;` the
number 8220 (which the number signals then compare), and `<b>` a word "b". `plain` gives the text the markup
stands for; every reader of product text calls it first (the lexical space, the title, brand, code, colour
and attribute signals, and the text the embedding model reads), so a row an application writes into the
database is read the same as a row `ingest` loads. The stored text is left as written.
"""

from __future__ import annotations

import html
import re

# an HTML comment, or an opening, closing or empty element tag: "<b>", "</p>", "<br/>", '<span class="x">';
# not "<5 mm", "<->" or "a < b", whose "<" is no tag
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>", re.S)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def plain(text: str) -> str:
    """`text` with its HTML entities decoded ("&amp;" -> "&", "&#8220;" -> "“") and its tags replaced by a
    space; text without markup comes back unchanged (the same object)."""
    for _ in range(2):  # "&amp;amp;": markup escaped twice over, as exports of exports have it
        if "&" not in text or not _ENTITY.search(text):
            break
        text = html.unescape(text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    return text
