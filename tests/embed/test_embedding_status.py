"""The status a product gets after encoding (embed.batch.embedding_status): pure rules, no model, no database."""

from __future__ import annotations

import pytest

from prodmatch.embed.batch import embedding_status

TEMPLATE = "{title}"


@pytest.mark.parametrize(
    "fused_ok, image_ok, has_image_ref, text, image_error, expected",
    [
        (True, True, True, "red kettle", None, ("done", None)),
        (True, False, False, "red kettle", "no image", ("done", None)),  # text-only product: nothing failed
        (True, False, True, "red kettle", "HTTP 404", ("image_error", "HTTP 404")),
        (True, True, True, "", None, ("done", None)),  # image only, the template rendered nothing
        (False, False, True, "red kettle", "HTTP 404", ("failed", "HTTP 404")),
        (False, False, False, "x", None, ("failed", "nothing to embed")),
        (
            False,
            False,
            True,
            "",
            "not an image",
            ("failed", "not an image; no text (template '{title}' is empty for this product)"),
        ),
    ],
)
def test_embedding_status(fused_ok, image_ok, has_image_ref, text, image_error, expected):
    status = embedding_status(
        fused_ok=fused_ok,
        image_ok=image_ok,
        has_image_ref=has_image_ref,
        text=text,
        image_error=image_error,
        template=TEMPLATE,
    )
    assert status == expected
