"""Shared fixtures. Database fixtures live in db_fixtures.py (one embedded server per session); data builders
that several test folders use live in builders.py.

The model fixtures build tiny random-weight CLIP, SigLIP and SigLIP 2 checkpoints once per session (prodmatch.toymodels);
tests load them through `Encoder.load(str(directory))`, the same from_pretrained path a downloaded model takes.
"""

from pathlib import Path

import hypothesis
import pytest
from builders import matched_items, write_items

from prodmatch import store as db
from prodmatch.demo.toymodels import build_clip, build_siglip, build_siglip2
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.ingest.load import ingest_file

# The database fixtures (pg_server, template_url, settings, empty_settings, conn) as a plugin module, so that
# they are found by name without being imported here; dev_data turns a "needs ../shared/data" skip into a
# failure under CI.
pytest_plugins = ["db_fixtures", "dev_data"]


# Property tests judge results, not speed: hypothesis's default 200 ms deadline per example (and its too-slow
# health check) fail at random on a busy 2-core machine.
hypothesis.settings.register_profile(
    "prodmatch", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("prodmatch")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny random-weight CLIP checkpoint directory (32-dimensional vectors, 77 text positions)."""
    return build_clip(tmp_path_factory.mktemp("models") / "tiny-clip", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory) -> Path:
    """A tiny random-weight SigLIP checkpoint directory (32-dimensional vectors, text padded to 64)."""
    return build_siglip(tmp_path_factory.mktemp("models") / "tiny-siglip", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_siglip2_dir(tmp_path_factory) -> Path:
    """A tiny random-weight SigLIP 2 checkpoint directory, laid out like google/siglip2-base-patch16-256: a SigLIP
    model with a Gemma tokenizer that knows ASCII, Cyrillic and common Chinese characters (byte fallback for the
    rest); 32-dimensional vectors, text padded to 64."""
    return build_siglip2(tmp_path_factory.mktemp("models") / "tiny-siglip2", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_siglip2_naflex_dir(tmp_path_factory) -> Path:
    """A tiny random-weight SigLIP 2 NaFlex checkpoint directory, laid out like google/siglip2-base-patch16-naflex
    (model_type "siglip2": each image keeps its aspect ratio, up to 16 patches of 8x8); the same tokenizer."""
    return build_siglip2(
        tmp_path_factory.mktemp("models") / "tiny-siglip2-naflex", size="tiny-naflex", seed=0
    )


@pytest.fixture
def clip_model(settings, tiny_clip_dir):
    """The tiny CLIP registered as model "clip" (fp32) in the test's database."""
    with db.connection(settings) as conn:
        return add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")


@pytest.fixture
def matched(settings, tiny_clip_dir, tmp_path):
    """shop (24 products) and rival: rival-0..15 are exact duplicates of shop-0..15 (same image and title, some
    with a 30% higher price); rival-16..23 are different products. Embedded with the tiny CLIP."""
    shop, rival = matched_items(tmp_path)
    with db.connection(settings) as conn:
        model = add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
        ingest_file(conn, write_items(tmp_path, "shop", shop), "shop")
        ingest_file(conn, write_items(tmp_path, "rival", rival), "rival")
    embed(settings, EmbedOptions(batch_size=16))
    return model
