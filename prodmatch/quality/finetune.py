"""Fine-tune a CLIP-family model on the user's own matched product pairs, and register the result.

A gold file lists pairs of products already known to be the same; `quality.gold` reads it (its docstring has the
format) and `read_gold_pairs` looks the products up in what `ingest` loaded. `finetune` splits the matches into a
training part and a hold-out part that shares no product with it, trains the last few transformer layers and the
projections of both towers with a contrastive loss (each source product against the other pairs' targets in its
batch), measures the hold-out recall@1 and F1 before and after (`quality.metrics`), saves the model as a Hugging
Face checkpoint directory that `embed.encoders` loads like any other, and registers it through
`embed.registry.add_model` beside the base model, so the worker can embed with it and `quality.evaluate` compare
the two before anyone switches. Vectors are made by `embed.batch`, exactly as the worker makes them: images
through `embed.images` and the model's own preprocessing, texts through the base model's text template.
"""

from __future__ import annotations

import math
import random
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psycopg
import torch
import torch.nn.functional as F
from psycopg.rows import dict_row
from tqdm import tqdm

from prodmatch.embed.batch import embed_products
from prodmatch.embed.encoders import Encoder, load_processor_and_model, resolve_precision
from prodmatch.embed.fusion import fused_dimension
from prodmatch.embed.images import ImageLimits, load_image
from prodmatch.embed.registry import add_model
from prodmatch.embed.text import DEFAULT_TEXT_TEMPLATE, render_text
from prodmatch.errors import ConfigError, ImageError
from prodmatch.hardware import resolve_device
from prodmatch.quality.gold import read_gold_file
from prodmatch.quality.metrics import best_f1, precision_recall_curve
from prodmatch.store.models import SPACES, default_name, find_model

# The temperature is the base model's own (exp(logit_scale), not trained), held within these bounds: a real CLIP
# or SigLIP sits at 100+ (clamped to 100, as CLIP clamped it in training), a randomly initialised one near 1-14.
MIN_LOGIT_SCALE = 10.0
MAX_LOGIT_SCALE = 100.0

# Modules that feed the transformer layers (patch/token embeddings, CLIP's pre-norm) stay frozen whatever
# `train_layers` says; everything after the layers (final norms, SigLIP's heads) is trained.
_INPUT_MODULES = ("embeddings", "pre_layrnorm", "pre_layernorm")
_TOWERS = ("vision_model", "text_model")
# Mixed precision: the towers compute in these under autocast, the weights and the optimiser stay float32.
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class FinetuneOptions:
    """How to fine-tune; the defaults suit a few hundred to a few thousand pairs and a pretrained CLIP/SigLIP."""

    epochs: int = 3
    batch_size: int = 16  # pairs per step; the other pairs of a batch are each pair's negatives
    lr: float = 1e-5  # peak learning rate (AdamW, linear warm-up over the first 10% of steps, cosine decay)
    train_layers: int = 2  # last transformer layers trained in each tower, besides the projections
    holdout: float = 0.2  # fraction of the matched pairs kept out of training to measure the change
    seed: int = 0
    precision: str = "auto"  # "auto": bf16 autocast on CPUs with native bf16 and on GPUs, else fp32
    device: str | None = None  # None: CUDA when present, else the CPU
    name: str | None = None  # the new model's name; default "<base name>-ft"
    progress: bool = False
    image_threads: int = 4


@dataclass(frozen=True)
class GoldProduct:
    """A product named by the gold file, with what its text and image are made from."""

    id: int
    catalog: str
    external_id: str
    title: str | None
    description: str | None
    brand: str | None
    category: str | None
    price: object
    currency: str | None
    image: str | None
    attributes: dict | None

    def fields(self) -> dict:
        """The product as `embed.text.render_text` takes it."""
        return asdict(self)


@dataclass(frozen=True)
class TrainingPair:
    """A usable gold line (`quality.gold.TrainingPair`) with its two products looked up: 1 for the same, 0 for not."""

    line: int
    source: GoldProduct
    target: GoldProduct
    label: int


@dataclass(frozen=True)
class FinetuneResult:
    """What one fine-tuning did: data used, hold-out quality before and after, the new model."""

    base: str
    source: str  # the base model's weights (hub id or directory)
    out: str
    model_name: str
    train_pairs: int
    holdout_pairs: int
    epochs: int
    before: dict  # {"image"|"text"|"fused": {"recall_at_1", "f1", "threshold"}}; empty without a hold-out
    after: dict
    losses: list[float | None]  # mean training loss per epoch (None: no batch had two pairs to contrast)
    seconds: float
    unknown: list[str] = field(default_factory=list)  # gold lines not used, each with file, line and reason
    non_matches: int = 0  # label-0 lines: read, not trained on
    image_errors: list[str] = field(default_factory=list)  # products whose image failed: text terms only
    precision: str = "fp32"
    device: str = "cpu"
    trainable_parameters: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        lines = [
            f"fine-tuned {self.base} on {self.train_pairs} pairs ({self.holdout_pairs} held out) "
            f"in {self.seconds:.0f} s -> {self.out}, registered as {self.model_name}"
        ]
        for space in ("image", "text", "fused"):
            before, after = self.before.get(space, {}), self.after.get(space, {})
            if before or after:
                lines.append(
                    f"  hold-out {space:<6} recall@1 {before.get('recall_at_1', 0):.3f} -> "
                    f"{after.get('recall_at_1', 0):.3f}   F1 {before.get('f1', 0):.3f} -> {after.get('f1', 0):.3f}"
                )
        lines.append(
            f"next: prodmatch embed --model {self.model_name}; compare with prodmatch eval --model "
            f"{self.model_name} before switching"
        )
        return "\n".join(lines)


def read_gold_pairs(conn: psycopg.Connection, gold_file: Path) -> tuple[list[TrainingPair], list[str]]:
    """The pairs of a gold file whose products exist, and a message (file, line, reason) for each line that is not.

    The file is read by `quality.gold.read_gold_file` (its docstring has the format).
    """
    gold_file = Path(gold_file)
    gold = read_gold_file(gold_file)
    problems = dict(gold.problems)
    keys = {
        key for g in gold.pairs for key in ((g.source_catalog, g.source_id), (g.target_catalog, g.target_id))
    }
    products = _products(conn, keys)
    known_catalogs = {name for (name,) in conn.execute("SELECT name FROM prodmatch.catalogs")}
    pairs = []
    for g in gold.pairs:
        source = products.get((g.source_catalog, g.source_id))
        target = products.get((g.target_catalog, g.target_id))
        missing = [
            _unknown_reference(catalog, external_id, known_catalogs)
            for catalog, external_id, product in (
                (g.source_catalog, g.source_id, source),
                (g.target_catalog, g.target_id, target),
            )
            if product is None
        ]
        if missing:
            problems[g.line] = f"{gold_file}:{g.line}: {'; '.join(missing)}"
        elif source.id == target.id:
            problems[g.line] = f"{gold_file}:{g.line}: source and target are the same product"
        else:
            pairs.append(TrainingPair(g.line, source, target, g.label))
    return pairs, [problems[line] for line in sorted(problems)]


def finetune(
    conn: psycopg.Connection,
    gold_file: Path,
    base: str,
    out: Path,
    options: FinetuneOptions = FinetuneOptions(),
) -> FinetuneResult:
    """Fine-tune `base` (a registered model's name, a hub id or a directory) on the gold pairs; save and register it.

    Raises `ConfigError` for bad options, an `out` that is not empty, a taken name or a gold file with no usable
    match. The new model is registered in the caller's transaction.
    """
    started = time.perf_counter()
    _check_options(options)
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists and is not empty; pass a new --out directory")
    base_model = find_model(conn, base)
    source = base_model.source if base_model else base
    name = options.name or f"{base_model.name if base_model else default_name(base)}-ft"
    if find_model(conn, name) is not None:
        raise ConfigError(f"a model named {name!r} is already registered; pick another --name")
    template = base_model.text_template if base_model else DEFAULT_TEXT_TEMPLATE
    fusion = base_model.fusion if base_model else "mean"
    image_weight = base_model.image_weight if base_model else 0.5

    pairs, unknown = read_gold_pairs(conn, gold_file)
    matches = _unique_matches(pairs)
    if not matches:
        first = "".join(f"\n  {message}" for message in unknown[:5])
        raise ConfigError(f"{gold_file}: no usable matched pair (label 1) to train on{first}")
    train, holdout = split_pairs(matches, options.holdout, options.seed)

    processor, model = load_processor_and_model(
        source, revision=base_model.revision if base_model else None, dtype=torch.float32
    )
    model = model.to(device).eval()
    encoder = Encoder(processor, model, source=source, revision=None, device=device, precision="fp32")
    data = _PairData(encoder, template, options.image_threads)

    def evaluate() -> dict:
        return _evaluate(encoder, data, holdout, fusion, image_weight) if holdout else {}

    try:
        before = evaluate()
        trainable = freeze_for_finetuning(model, options.train_layers)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(options.seed)
            losses = _train(model, data, train, options, device, precision, trainable)
        model.eval()
        after = evaluate()
    finally:
        data.close()
    _save(model, processor, out)
    registered = add_model(
        conn,
        str(out.resolve()),
        name=name,
        fusion=fusion,
        image_weight=image_weight,
        text_template=template,
        precision=options.precision,
    )
    return FinetuneResult(
        base=base,
        source=source,
        out=str(out.resolve()),
        model_name=registered.name,
        train_pairs=len(train),
        holdout_pairs=len(holdout),
        epochs=options.epochs,
        before=before,
        after=after,
        losses=losses,
        seconds=round(time.perf_counter() - started, 3),
        unknown=unknown,
        non_matches=sum(1 for pair in pairs if pair.label == 0),
        image_errors=sorted(data.image_errors.values()),
        precision=precision,
        device=str(device),
        trainable_parameters=sum(p.numel() for p in trainable),
    )


def split_pairs(
    pairs: list[TrainingPair], holdout: float, seed: int
) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """Training and hold-out pairs: about `holdout` of them held out, no product on both sides, seeded.

    Pairs that share a product (one shop item matched to two rival listings) go to the same side, so the
    hold-out measures products the model has never been trained on.
    """
    if holdout <= 0 or len(pairs) < 2:
        return list(pairs), []
    groups = _connected_groups(pairs)
    random.Random(seed).shuffle(groups)
    wanted = max(1, round(holdout * len(pairs)))
    held: list[int] = []
    for group in groups:
        if len(held) >= wanted:
            break
        held.extend(group)
    held_set = set(held)
    train = [pair for i, pair in enumerate(pairs) if i not in held_set]
    if not train:
        raise ConfigError(
            f"all {len(pairs)} matched pairs fall into the hold-out (they share products); lower --holdout "
            f"or add more pairs"
        )
    return train, [pairs[i] for i in sorted(held)]


def freeze_for_finetuning(model: torch.nn.Module, train_layers: int) -> list[torch.nn.Parameter]:
    """Freeze the model except the last `train_layers` layers of each tower, what follows them and the projections.

    Works for CLIP (final norms, `visual_projection`, `text_projection`) and SigLIP (final norms and the towers'
    `head`s) and any model laid out like them (`vision_model` / `text_model` with `encoder.layers`). The logit
    scale and bias stay frozen. Returns the trainable parameters.
    """
    towers = [getattr(model, name, None) for name in _TOWERS]
    if any(tower is None or not hasattr(getattr(tower, "encoder", None), "layers") for tower in towers):
        raise ConfigError(
            f"cannot fine-tune a {model.config.model_type!r} model: it lacks vision_model/text_model towers with "
            f"encoder layers (CLIP and SigLIP have them)"
        )
    model.requires_grad_(False)
    for name, module in model.named_children():
        if name not in _TOWERS:
            module.requires_grad_(True)  # the projections
    for tower in towers:
        for name, module in tower.named_children():
            if name not in _INPUT_MODULES and name != "encoder":
                module.requires_grad_(True)
        layers = tower.encoder.layers
        for layer in list(layers)[len(layers) - min(train_layers, len(layers)) :]:
            layer.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def contrastive_loss(
    sources: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    present: dict[str, torch.Tensor],
    shared: torch.Tensor,
    logit_scale: float,
) -> torch.Tensor | None:
    """Symmetric InfoNCE over a batch of matched pairs, averaged over image-image, text-text and both cross terms.

    `sources` / `targets` map "image" and "text" to (n, d) unit rows, row i of each being pair i; `present` maps
    "source_image", "target_text", ... to (n,) booleans (a product whose image failed only takes part in its
    text terms). `shared[i, j]` is true when pairs i and j share a product; such j are not counted as negatives
    of i. Returns None when no term has two pairs to contrast.
    """
    terms = []
    for source_space, target_space in (
        ("image", "image"),
        ("text", "text"),
        ("image", "text"),
        ("text", "image"),
    ):
        keep = present[f"source_{source_space}"] & present[f"target_{target_space}"]
        if int(keep.sum()) < 2:
            continue
        logits = logit_scale * sources[source_space][keep].float() @ targets[target_space][keep].float().T
        same = shared[keep][:, keep] & ~torch.eye(int(keep.sum()), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same, float("-inf"))
        labels = torch.arange(len(logits), device=logits.device)
        terms.append((F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2)
    return torch.stack(terms).mean() if terms else None


def holdout_metrics(
    sources: np.ndarray, targets: np.ndarray, truth: list[set[int]]
) -> dict[str, float | None]:
    """Recall@1 and the best F1 of each source's top-1 target, for (n, d) and (m, d) unit rows.

    `truth[i]` holds the indices of source i's true targets. A source or target whose vector is missing (a row
    of NaN) cannot be matched: the source counts as a miss. The F1 treats each source's top-1 target above a
    threshold as a predicted match (right when it is a true target) against all sources as the true matches,
    and reports the threshold that maximises it.
    """
    n = len(sources)
    source_ok, target_ok = np.isfinite(sources).all(axis=1), np.isfinite(targets).all(axis=1)
    scores = np.where(source_ok[:, None], sources, 0.0) @ np.where(target_ok[:, None], targets, 0.0).T
    scores[~source_ok, :] = -np.inf
    scores[:, ~target_ok] = -np.inf
    top = scores.argmax(axis=1) if scores.shape[1] else np.zeros(n, dtype=int)
    best = scores[np.arange(n), top] if scores.shape[1] else np.full(n, -np.inf)
    correct = np.array([np.isfinite(best[i]) and int(top[i]) in truth[i] for i in range(n)])
    recall_at_1 = float(correct.mean()) if n else 0.0
    point = best_f1(precision_recall_curve(best, correct, n))
    point = point if point is not None and point.f1 > 0 else None  # no threshold finds a single right match
    return {
        "recall_at_1": round(recall_at_1, 4),
        "f1": round(point.f1, 4) if point else 0.0,
        "threshold": round(point.threshold, 4) if point else None,
    }


def _products(conn: psycopg.Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], GoldProduct]:
    if not keys:
        return {}
    catalogs, external_ids = zip(*sorted(keys), strict=True)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT p.id, c.name AS catalog, p.external_id, p.title, p.description, p.brand, p.category, p.price,"
            " p.currency, p.image, p.attributes"
            " FROM unnest(%s::text[], %s::text[]) AS k(catalog, external_id)"
            " JOIN prodmatch.catalogs c ON c.name = k.catalog"
            " JOIN prodmatch.products p ON p.catalog_id = c.id AND p.external_id = k.external_id",
            (list(catalogs), list(external_ids)),
        ).fetchall()
    return {(row["catalog"], row["external_id"]): GoldProduct(**row) for row in rows}


def _unknown_reference(catalog: str, external_id: str, known_catalogs: set[str]) -> str:
    if catalog not in known_catalogs:
        known = ", ".join(sorted(known_catalogs)) or "none"
        return f"no catalogue named {catalog!r} (catalogues: {known})"
    return f"no product {external_id!r} in catalogue {catalog!r}"


def _unique_matches(pairs: list[TrainingPair]) -> list[TrainingPair]:
    seen: set[tuple[int, int]] = set()
    matches = []
    for pair in pairs:
        key = (pair.source.id, pair.target.id)
        if pair.label == 1 and key not in seen:
            seen.add(key)
            matches.append(pair)
    return matches


def _connected_groups(pairs: list[TrainingPair]) -> list[list[int]]:
    """Indices of `pairs` grouped so that pairs sharing a product (directly or through others) are together."""
    parent = list(range(len(pairs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_pair_of: dict[int, int] = {}
    for i, pair in enumerate(pairs):
        for product in (pair.source.id, pair.target.id):
            j = first_pair_of.setdefault(product, i)
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(pairs)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


# --- training -----------------------------------------------------------------------------------------------


class _PairData:
    """Texts, tokens and pixels of gold products, made exactly as the worker (`embed.batch`) makes them."""

    def __init__(self, encoder: Encoder, template: str, image_threads: int) -> None:
        self.encoder = encoder
        self.template = template
        self.limits = ImageLimits(max_side=512, shortest_side=encoder.image_side)
        self.image_errors: dict[int, str] = {}  # product id -> message; a failed image is not read again
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, image_threads), thread_name_prefix="finetune-images"
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def text(self, product: GoldProduct) -> str:
        return render_text(self.template, product.fields())

    def load_pixels(self, products: list[GoldProduct]) -> list[Future]:
        """Futures of each product's pixel tensor (None where the image failed), read in the thread pool."""
        return [self.pool.submit(self._pixels, product) for product in products]

    def _pixels(self, product: GoldProduct) -> torch.Tensor | None:
        if product.id in self.image_errors:
            return None
        if not product.image:
            self.image_errors[product.id] = f"{product.catalog}:{product.external_id}: no image"
            return None
        try:
            return self.encoder.preprocess_images([load_image(product.image, self.limits)])[0]
        except ImageError as error:
            self.image_errors[product.id] = f"{product.catalog}:{product.external_id}: {error}"
            return None


def _train(
    model: torch.nn.Module,
    data: _PairData,
    pairs: list[TrainingPair],
    options: FinetuneOptions,
    device: torch.device,
    precision: str,
    trainable: list[torch.nn.Parameter],
) -> list[float | None]:
    """Train for `options.epochs` epochs; returns the mean loss of each."""
    order = torch.Generator().manual_seed(options.seed)
    batches_per_epoch = math.ceil(len(pairs) / options.batch_size)
    steps = options.epochs * batches_per_epoch
    optimizer = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    logit_scale = float(model.logit_scale.detach().float().exp().clamp(MIN_LOGIT_SCALE, MAX_LOGIT_SCALE))
    autocast = {"device_type": device.type, "dtype": _AUTOCAST.get(precision), "enabled": precision != "fp32"}
    bar = tqdm(total=steps, unit="batch", desc="fine-tune", disable=not options.progress, file=sys.stderr)
    losses = []
    model.train()
    try:
        for epoch in range(options.epochs):
            # Even batches (no batch of one, which has nothing to contrast), in a seeded order per epoch.
            batches = [
                [pairs[i] for i in chunk.tolist()]
                for chunk in torch.tensor_split(
                    torch.randperm(len(pairs), generator=order), batches_per_epoch
                )
            ]
            pending = data.load_pixels(_batch_products(batches[0]))
            epoch_losses = []
            for b, batch in enumerate(batches):
                pixels = [future.result() for future in pending]
                if b + 1 < len(batches):  # read the next batch's images while this one trains
                    pending = data.load_pixels(_batch_products(batches[b + 1]))
                loss = _batch_loss(model, data, batch, pixels, device, logit_scale, autocast)
                if loss is not None:
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    epoch_losses.append(float(loss.detach()))
                schedule.step()
                bar.update(1)
                if epoch_losses:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(epoch_losses):.4f}")
            losses.append(round(float(np.mean(epoch_losses)), 6) if epoch_losses else None)
    finally:
        bar.close()
        model.eval()
    return losses


def _batch_products(batch: list[TrainingPair]) -> list[GoldProduct]:
    return [pair.source for pair in batch] + [pair.target for pair in batch]


def _batch_loss(
    model: torch.nn.Module,
    data: _PairData,
    batch: list[TrainingPair],
    pixels: list[torch.Tensor | None],
    device: torch.device,
    logit_scale: float,
    autocast: dict,
) -> torch.Tensor | None:
    """The batch's contrastive loss; the towers run under `autocast`, the loss itself in float32."""
    products = _batch_products(batch)
    n = len(batch)
    texts = [data.text(product) for product in products]
    has_image = torch.tensor([p is not None for p in pixels], device=device)
    has_text = torch.tensor([bool(t) for t in texts], device=device)
    with torch.autocast(**autocast):
        image = _image_features(model, data, pixels, device)
        text = _text_features(model, data, texts, device)
    ids = torch.tensor([[pair.source.id, pair.target.id] for pair in batch], device=device)
    shared = (ids[:, None, 0] == ids[None, :, 0]) | (ids[:, None, 1] == ids[None, :, 1])
    return contrastive_loss(
        {"image": image[:n], "text": text[:n]},
        {"image": image[n:], "text": text[n:]},
        {
            "source_image": has_image[:n],
            "target_image": has_image[n:],
            "source_text": has_text[:n],
            "target_text": has_text[n:],
        },
        shared,
        logit_scale,
    )


def _image_features(
    model: torch.nn.Module, data: _PairData, pixels: list[torch.Tensor | None], device: torch.device
) -> torch.Tensor:
    present = [p for p in pixels if p is not None]
    if not present:
        return torch.zeros((len(pixels), 1), device=device)
    # the encoder unpacks what its tower takes (NaFlex: patches, patch mask and grid packed in one tensor)
    output = model.get_image_features(**data.encoder.image_inputs(torch.stack(present), device))
    return _scatter_unit_rows(output, [p is not None for p in pixels], device)


def _text_features(
    model: torch.nn.Module, data: _PairData, texts: list[str], device: torch.device
) -> torch.Tensor:
    present = [t for t in texts if t]
    if not present:
        return torch.zeros((len(texts), 1), device=device)
    output = model.get_text_features(**data.encoder.tokenize(present, device))
    return _scatter_unit_rows(output, [bool(t) for t in texts], device)


def _scatter_unit_rows(output, present: list[bool], device: torch.device) -> torch.Tensor:
    """A `get_*_features` result as float32 unit rows in the positions of `present`, zeros elsewhere."""
    vectors = output if isinstance(output, torch.Tensor) else output.pooler_output
    rows = F.normalize(vectors.float(), dim=-1)  # float32 from here on, under autocast or not
    full = torch.zeros((len(present), rows.shape[1]), device=device)
    index = torch.tensor([i for i, p in enumerate(present) if p], device=device)
    return full.index_put((index,), rows)


def _warmup_cosine(steps: int):
    warmup = max(1, round(0.1 * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return factor


def _check_options(options: FinetuneOptions) -> None:
    checks = [
        (options.epochs >= 1, f"--epochs must be at least 1, got {options.epochs}"),
        (
            options.batch_size >= 2,
            f"--batch-size must be at least 2 (pairs contrast within a batch), got {options.batch_size}",
        ),
        (options.lr > 0 and math.isfinite(options.lr), f"--lr must be a positive number, got {options.lr}"),
        (options.train_layers >= 0, f"--train-layers must be 0 or more, got {options.train_layers}"),
        (0 <= options.holdout < 1, f"--holdout must be a fraction from 0 to below 1, got {options.holdout}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


# --- evaluation and saving ----------------------------------------------------------------------------------


def _evaluate(
    encoder: Encoder, data: _PairData, pairs: list[TrainingPair], fusion: str, image_weight: float
) -> dict[str, dict]:
    """Hold-out recall@1 and F1 per space: each hold-out source against every hold-out target."""
    sources = list({pair.source.id: pair.source for pair in pairs}.values())
    targets = list({pair.target.id: pair.target for pair in pairs}.values())
    target_index = {product.id: i for i, product in enumerate(targets)}
    truth_by_source: dict[int, set[int]] = {}
    for pair in pairs:
        truth_by_source.setdefault(pair.source.id, set()).add(target_index[pair.target.id])
    truth = [truth_by_source[product.id] for product in sources]
    source_vectors = _embed(encoder, data, sources, fusion, image_weight)
    target_vectors = _embed(encoder, data, targets, fusion, image_weight)
    return {space: holdout_metrics(source_vectors[space], target_vectors[space], truth) for space in SPACES}


def _embed(
    encoder: Encoder, data: _PairData, products: list[GoldProduct], fusion: str, image_weight: float
) -> dict[str, np.ndarray]:
    """Image, text and fused vectors (NaN rows where missing), as the worker would store them."""
    parts = []
    for start in range(0, len(products), _EVAL_BATCH):
        chunk = products[start : start + _EVAL_BATCH]
        pixels = [future.result() for future in data.load_pixels(chunk)]
        texts = [data.text(product) for product in chunk]
        parts.append(embed_products(encoder, pixels, texts, fusion=fusion, image_weight=image_weight))
    width, fused_width = encoder.info.dimension, fused_dimension(encoder.info.dimension, fusion)
    return {
        "image": np.concatenate([p.image for p in parts]) if parts else np.empty((0, width), np.float32),
        "text": np.concatenate([p.text for p in parts]) if parts else np.empty((0, width), np.float32),
        "fused": np.concatenate([p.fused for p in parts])
        if parts
        else np.empty((0, fused_width), np.float32),
    }


_EVAL_BATCH = 64


def _save(model: torch.nn.Module, processor, out: Path) -> None:
    """Write a checkpoint directory that `Encoder.load(out)` and `prodmatch models add OUT` read."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    # transformers 5 keeps the image processor inside processor_config.json; also write the separate
    # preprocessor_config.json that hub checkpoints (and older transformers) carry.
    processor.image_processor.save_pretrained(out)
