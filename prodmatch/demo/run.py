"""The end-to-end demo, the README's main job: generate two catalogues, then ingest, embed, evaluate, link, dedupe.

`demo.catalogues` (with `demo.world` and `demo.pictures`) draws the catalogues (product images, noisy Russian/English titles, price jitter, gold pairs and
decoys); this module runs them through the same library functions the CLI uses, on whatever database the
settings name (the embedded one by default), and returns a short report with the plot paths. When the requested
model cannot be loaded (no network, no local copy), it says so and goes on with a small random-weight CLIP built
locally, so the pipeline can be seen end to end anywhere; its scores then show the machinery, not real quality.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prodmatch import match as matching
from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.errors import ModelLoadError
from prodmatch.ingest.load import ingest_file
from prodmatch.ingest.sources import IngestOptions
from prodmatch.quality.evaluate import evaluate, save_recommendation
from prodmatch.store.models import default_name, find_model

FALLBACK_MODEL = "demo-random-clip"
FEW_LABELS = 30  # the review labels the demo gives the built-in matcher as corrections


@dataclass
class DemoReport:
    """What the demo did, step by step, and where to look next."""

    folder: str
    model: str
    model_note: str | None
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    ingested: dict[str, dict] = field(default_factory=dict)
    embedded: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    link: dict = field(default_factory=dict)
    dedupe: dict = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    sample_matches: list[dict] = field(default_factory=list)
    finetune: dict = field(default_factory=dict)  # hold-out before/after and the tuned model's evaluation
    matcher: dict = field(
        default_factory=dict
    )  # the learned matcher against each single space, on held-out pairs
    matcher_link: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        lines = [f"demo in {self.folder} with model {self.model}"]
        for catalog, counts in self.ingested.items():
            lines.append(f"  ingested {catalog}: {counts['rows']} rows, {counts['rejected']} rejected")
        e = self.embedded
        lines.append(
            f"  embedded {e['embedded']} products ({e['image_errors']} image errors) "
            f"at {e['products_per_second']:.1f} products/s"
        )
        for space in self.evaluation["spaces"]:
            lines.append(
                f"  {space['space']:<6} recall@1 {space['recall_at_1']:.3f}  MRR {space['mrr']:.3f}  "
                f"best F1 {space['best_f1']:.3f}"
            )
        rec = self.evaluation["recommendation"]
        if rec.get("threshold") is not None:
            lines.append(
                f"  recommended: {rec['space']} (w={rec['image_weight']}), threshold {rec['threshold']:.4f}, "
                f"F1 {rec['f1']:.3f} — saved with the model"
            )
        lines.append(
            f"  link run {self.link['run_id']} (built-in matcher, no label): {self.link['accepted']} accepted of "
            f"{self.link['pairs']} candidate pairs, for {self.link['matched_sources']} of {self.link['sources']} "
            f"products -> {self.link['out']}"
        )
        if self.matcher.get("rows"):
            m = self.matcher
            lines.append(
                f"  learned matcher {m['name']!r} ({m['kind']}, trained on {m['train_sources']} shop products' gold "
                f"pairs) beside the built-in matcher (no label at all; builtin+{FEW_LABELS}: from it with "
                f"{FEW_LABELS} labelled pairs), end to end on {m['test_pairs']} held-out gold pairs:"
            )
            lines.append(f"    {'decision':<16}{'mode':<9}{'precision':>10}{'recall':>8}{'F1':>7}")
            for r in m["rows"]:
                lines.append(
                    f"    {r['name']:<16}{r['mode']:<9}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['f1']:>7.3f}"
                )
            if self.matcher_link:
                ml = self.matcher_link
                lines.append(
                    f"  link run {ml['run_id']} (matcher, one-to-one): {ml['accepted']} accepted pairs of "
                    f"{ml['sources']} products -> {ml['out']}"
                )
        elif self.matcher.get("note"):
            lines.append(f"  learned matcher: {self.matcher['note']}")
        lines.append(
            f"  dedupe run {self.dedupe['run_id']} (built-in matcher, the evidence link uses): "
            f"{self.dedupe['clusters']} duplicate clusters"
        )
        if self.sample_matches:
            lines.append(
                "  most certain matches of the built-in matcher (match probability, shop <-> competitor):"
            )
        lines += [f"    {m['probability']}  {m['source']}  <->  {m['target']}" for m in self.sample_matches]
        lines += [f"  plot {name}: {path}" for name, path in self.plots.items()]
        if self.finetune:
            ft = self.finetune
            lines.append(
                f"  fine-tuned {ft['model']} on {ft['train_pairs']} pairs; on {ft['holdout_pairs']} held-out pairs:"
            )
            for space in ("image", "text", "fused"):
                before, after = ft["holdout_before"].get(space, {}), ft["holdout_after"].get(space, {})
                lines.append(
                    f"    {space:<6} recall@1 {before.get('recall_at_1', 0):.3f} -> {after.get('recall_at_1', 0):.3f}"
                )
            lines.append(
                f"  compare: prodmatch eval --gold {self.folder}/data/gold.csv --model {ft['model']}"
            )
        lines.append("  timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.steps.items()))
        lines.append(
            "  try: prodmatch db status; prodmatch similar shop:SH-0001; prodmatch search 'wireless headphones'"
        )
        lines.append(
            "  in SQL: prodmatch db shell -c 'SELECT * FROM prodmatch.matches_v LIMIT 10';"
            " prodmatch db shell -f sql/examples/01_competitor_price_gaps.sql (and the other sql/examples)"
        )
        return "\n".join(lines)


def run_demo(
    settings: Settings,
    *,
    model: str | None = None,
    size: int = 200,
    seed: int = 0,
    folder: Path | None = None,
    finetune: bool = False,
    progress: bool = False,
) -> DemoReport:
    """Generate the demo catalogues and run the whole pipeline on them; optionally fine-tune and compare."""
    from prodmatch.demo.catalogues import generate

    folder = Path(folder or settings.home / "demo")
    clock = _Clock()
    with clock("migrate"):
        db.upgrade(settings)
    with clock("generate"):
        files = generate(folder / "data", size, seed=seed)
    with db.connection(settings) as conn:
        with clock("ingest"):
            shop = ingest_file(conn, files.shop, files.shop_catalog, IngestOptions(progress=progress))
            rival = ingest_file(
                conn, files.competitor, files.competitor_catalog, IngestOptions(progress=progress)
            )
            conn.commit()
        with clock("register model"):
            name, note = _register(conn, settings, model)
            conn.commit()
    report = DemoReport(folder=str(folder), model=name, model_note=note)
    report.ingested = {
        r.catalog: {"rows": r.rows, "inserted": r.inserted, "updated": r.updated, "unchanged": r.unchanged,
                    "rejected": r.rejected}
        for r in (shop, rival)
    }  # fmt: skip
    with clock("embed"):
        [summary] = embed(settings, EmbedOptions(model=name, precision=settings.precision, progress=progress))
    report.embedded = summary.to_dict()
    with db.connection(settings) as conn:
        with clock("evaluate"):
            evaluation = evaluate(conn, files.gold, model=name, plots_dir=folder / "plots")
            if evaluation.recommendation.get("threshold") is not None:
                save_recommendation(conn, evaluation)
            conn.commit()
        report.evaluation = {
            "spaces": [s.summary() for s in evaluation.spaces],
            "recommendation": evaluation.recommendation,
            "unknown": evaluation.unknown,
        }
        report.plots = evaluation.plots
        with clock("link"):
            # No matcher, threshold or space: the built-in matcher decides, with no label (as a new user's link).
            linked = matching.link(
                conn,
                files.shop_catalog,
                files.competitor_catalog,
                k=5,
                model=name,
                out=folder / "matches.csv",
                progress=progress,
            )
            conn.commit()
        report.link = linked.to_dict()
        with clock("matcher"):
            report.matcher = _matcher_against_spaces(conn, files, name, folder, seed)
            conn.commit()
        if report.matcher.get("name"):
            with clock("link (matcher)"):
                by_matcher = matching.link(
                    conn,
                    files.shop_catalog,
                    files.competitor_catalog,
                    k=5,
                    matcher=report.matcher["name"],
                    one_to_one=True,
                    out=folder / "matches_matcher.csv",
                    progress=progress,
                )
                conn.commit()
            report.matcher_link = by_matcher.to_dict()
        with clock("dedupe"):
            # The same evidence as link: hybrid candidates and the built-in matcher's probabilities.
            deduped = matching.dedupe(conn, files.shop_catalog, progress=progress)
            conn.commit()
        report.dedupe = deduped.to_dict()
        if finetune:
            with clock("finetune"):
                report.finetune = _finetune_and_compare(conn, settings, files, name, folder, progress)
        report.sample_matches = [
            dict(zip(("source", "target", "probability", "source_price", "target_price"), row, strict=True))
            for row in conn.execute(
                "SELECT source_title, target_title, round(match_probability::numeric, 3), source_price, target_price"
                " FROM prodmatch.matches_v WHERE run_id = %s AND accepted"
                " ORDER BY match_probability DESC, source_external_id LIMIT 5",
                (linked.run_id,),
            )
        ]
    report.steps = clock.steps
    return report


def _matcher_against_spaces(conn, files, model: str, folder: Path, seed: int) -> dict:
    """Train a matcher on half the shop's gold pairs, then judge it and each single space on the other half.

    The split is by shop product (a product's pairs stay together), so the held-out half is really unseen.
    """
    import csv
    import random

    from prodmatch.errors import ProdmatchError
    from prodmatch.quality.gold import GOLD_HEADER, read_gold
    from prodmatch.quality.matchers import default_prior, evaluate_matcher, train_and_store

    pairs = read_gold(files.gold)
    sources = sorted({p.source_id for p in pairs})
    random.Random(f"prodmatch-demo-split:{seed}").shuffle(sources)
    train_sources = set(sources[: len(sources) // 2])
    paths = {"train": folder / "data" / "gold_train.csv", "test": folder / "data" / "gold_test.csv"}
    for split, path in paths.items():
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(GOLD_HEADER)
            for p in pairs:
                if (p.source_id in train_sources) == (split == "train"):
                    writer.writerow((p.source_catalog, p.source_id, p.target_catalog, p.target_id, p.label))
    name = "demo-matcher"
    try:
        trained = train_and_store(
            conn, paths["train"], files.shop_catalog, files.competitor_catalog, model=model, name=name
        )
        judged = evaluate_matcher(
            conn,
            paths["test"],
            name,
            files.shop_catalog,
            files.competitor_catalog,
            plots_dir=folder / "plots",
        )
        builtin = evaluate_matcher(
            conn, paths["test"], "builtin", files.shop_catalog, files.competitor_catalog
        )
        # what a person's first few review labels give: the built-in matcher with them as corrections
        few = _few_labels(paths["train"], folder / "data" / "gold_few.csv", FEW_LABELS, seed)
        train_and_store(
            conn,
            few,
            files.shop_catalog,
            files.competitor_catalog,
            name="demo-from-builtin",
            labelled_only=True,
            prior=default_prior(True),
        )
        started = evaluate_matcher(
            conn, paths["test"], "demo-from-builtin", files.shop_catalog, files.competitor_catalog
        )
    except ProdmatchError as error:  # too few gold pairs in a tiny demo
        return {"note": f"not trained: {error}"}
    zero_label = [
        {**asdict(r), "name": "builtin"} for r in builtin.rows if r.name == "matcher"
    ]  # the same held-out pairs, decided with no label at all
    zero_label += [
        {**asdict(r), "name": f"builtin+{FEW_LABELS}"} for r in started.rows if r.name == "matcher"
    ]
    return {
        "name": name,
        "kind": trained.kind,
        "train_sources": len(train_sources),
        "test_pairs": judged.gold_pairs,
        "candidate_recall": judged.candidate_recall,
        "rows": [asdict(r) for r in judged.rows] + zero_label,
        "plot": judged.plot,
    }


def _few_labels(gold: Path, out: Path, count: int, seed: int) -> Path:
    """A seeded `count` of `gold`'s labelled pairs (matches and decoys alike), as a person's first review labels."""
    import csv
    import random

    with open(gold, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    chosen = random.Random(f"prodmatch-demo-few:{seed}").sample(body, min(count, len(body)))
    with open(out, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *chosen])
    return out


def _finetune_and_compare(conn, settings: Settings, files, base: str, folder: Path, progress: bool) -> dict:
    """Fine-tune the model on the gold pairs (a hold-out never trained on), embed with it, evaluate both."""
    import shutil
    from dataclasses import replace

    import torch

    from prodmatch.quality.finetune import FinetuneOptions, finetune

    tuned_name = f"{base}-ft"
    out = folder / "models" / tuned_name
    existing = find_model(conn, tuned_name)
    if existing is not None:  # a re-run of the demo: start the comparison afresh
        from prodmatch.store.models import drop_model

        drop_model(conn, tuned_name)
        conn.commit()
    shutil.rmtree(out, ignore_errors=True)
    options = FinetuneOptions(name=tuned_name, precision=settings.precision, progress=progress)
    threads = torch.get_num_threads()
    if base == FALLBACK_MODEL:  # a tiny random model needs a bolder schedule to learn in seconds
        options = replace(options, epochs=12, lr=3e-3)
        torch.set_num_threads(1)  # and is slower, not faster, with more threads
    try:
        result = finetune(conn, files.gold, base, out, options)
    finally:
        torch.set_num_threads(threads)
    conn.commit()
    embed(settings, EmbedOptions(model=tuned_name, precision=settings.precision, progress=progress))
    tuned = evaluate(conn, files.gold, model=tuned_name, plots_dir=folder / "plots-finetuned")
    return {
        "model": tuned_name,
        "holdout_before": result.before,
        "holdout_after": result.after,
        "train_pairs": result.train_pairs,
        "holdout_pairs": result.holdout_pairs,
        "evaluation": [s.summary() for s in tuned.spaces],
        "plots": tuned.plots,
        "note": "evaluation over all gold pairs includes the ones trained on; hold-out figures are the fair ones",
    }


def _register(conn, settings: Settings, model: str | None) -> tuple[str, str | None]:
    """Register the requested model (or reuse it); fall back to a local random-weight CLIP when it cannot load."""
    source = model or settings.default_model
    existing = find_model(conn, source) or find_model(conn, default_name(source))
    if existing is not None:
        return existing.name, None
    try:
        return add_model(conn, source, precision=settings.precision).name, None
    except ModelLoadError as error:
        note = (
            f"{error}\nThe demo goes on with a small random-weight CLIP built locally: the pipeline runs end to end, "
            "but its scores show the machinery, not real matching quality. Pass --model DIR for real results."
        )
    if find_model(conn, FALLBACK_MODEL) is None:
        from prodmatch.demo.toymodels import build_clip

        directory = build_clip(settings.home / "models" / FALLBACK_MODEL, size="tiny", seed=0)
        add_model(conn, str(directory), name=FALLBACK_MODEL, precision="fp32")
    return FALLBACK_MODEL, note


class _Clock:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    def __call__(self, name: str):
        clock = self

        class _Step:
            def __enter__(self):
                self.started = time.perf_counter()

            def __exit__(self, *exc):
                clock.steps[name] = round(time.perf_counter() - self.started, 3)
                return False

        return _Step()
