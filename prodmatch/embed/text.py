"""A model's text template: which product fields make the text that is embedded, e.g. "{brand} {title}".

`check_template` refuses unknown fields when a model is registered (`embed.registry`); `render_text` fills a
template from a product's fields (attributes by `{attributes.colour}`), missing ones empty, for the worker's
batches (`embed.batch`) and fine-tuning (`quality.finetune`), so both embed exactly the same text.
"""

from __future__ import annotations

import re

from prodmatch.errors import ConfigError
from prodmatch.markup import plain

DEFAULT_TEXT_TEMPLATE = "{brand} {title}"
TEMPLATE_FIELDS = ("external_id", "title", "description", "brand", "category", "price", "currency", "catalog")

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?:\.([^{}\[\]]+)|\[([^{}\[\]]+)\])?\}")


def check_template(template: str) -> None:
    """Refuse a text template that names unknown fields."""
    if not template or not template.strip():
        raise ConfigError("the text template must not be empty")
    for match in _PLACEHOLDER.finditer(template):
        name, dotted, bracketed = match.groups()
        if name == "attributes" and (dotted or bracketed):
            continue
        if name not in TEMPLATE_FIELDS or dotted or bracketed:
            raise ConfigError(
                f"text template {template!r}: unknown field {match.group(0)}; use "
                + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
                + " or {attributes.NAME}"
            )
    leftover = _PLACEHOLDER.sub("", template)
    if "{" in leftover or "}" in leftover:
        raise ConfigError(f"text template {template!r}: unbalanced or malformed braces")


def render_text(template: str, product: dict) -> str:
    """The model's text for one product: the template filled in, missing fields empty, web markup read as
    text (`prodmatch.markup.plain`), spaces collapsed."""

    def fill(match: re.Match) -> str:
        name, dotted, bracketed = match.groups()
        if name == "attributes":
            value = (product.get("attributes") or {}).get(dotted or bracketed)
        else:
            value = product.get(name)
        return "" if value is None else str(value)

    return " ".join(plain(_PLACEHOLDER.sub(fill, template)).split())
