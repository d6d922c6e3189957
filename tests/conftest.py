"""Shared fixtures. Database fixtures live in db_fixtures.py (one embedded server per session).

The model fixtures build tiny random-weight CLIP and SigLIP checkpoints once per session (prodmatch.toymodels);
tests load them through `Encoder.load(str(directory))`, the same from_pretrained path a downloaded model takes.
"""

from pathlib import Path

import pytest
from db_fixtures import (  # noqa: F401  (fixtures are found by name)
    conn,
    empty_settings,
    pg_server,
    settings,
    template_url,
)

from prodmatch.demo.toymodels import build_clip, build_siglip


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny random-weight CLIP checkpoint directory (32-dimensional vectors, 77 text positions)."""
    return build_clip(tmp_path_factory.mktemp("models") / "tiny-clip", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory) -> Path:
    """A tiny random-weight SigLIP checkpoint directory (32-dimensional vectors, text padded to 64)."""
    return build_siglip(tmp_path_factory.mktemp("models") / "tiny-siglip", size="tiny", seed=0)
