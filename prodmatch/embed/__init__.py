"""embed: products into image, text and fused vectors, kept current by a worker.

`images` turns an image reference into a safe RGB image; `encoders` wraps a CLIP / SigLIP model's towers;
`fusion` combines image and text vectors; `text` renders a model's text template; `batch` embeds a batch of
products; `registry` registers a model (probe, then store); `queue` holds the claim / write / release SQL; and
`worker` is the loop that claims pending products, embeds them and watches for more.
"""

from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, EmbedSummary, embed

__all__ = ["EmbedOptions", "EmbedSummary", "add_model", "embed"]
