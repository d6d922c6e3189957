"""Clusters of offers: one product as it is sold across catalogues, with an id that outlives re-clustering.

On a marketplace one product has many offers: a source has several true targets and a target several sources.
`build_clusters` joins the accepted pairs of link runs (across catalogues) and the duplicate clusters of dedupe
runs (inside one catalogue) by average linkage (`match.assign.offer_clusters`: two groups of offers join when at
least half the pairs between them that a link run compared were accepted, so one lookalike accepted between two
products does not chain them, as connected components would), and stores them in
`prodmatch.clusters` / `prodmatch.product_clusters` (`store.runs` does the SQL); `prodmatch.clusters_v` and
`prodmatch.offers_of(catalog, external_id)` (`sql/clusters.sql`) read them. `link --watch` calls it again after it
repairs a run (`match.watch`), so the clusters follow the products.

Which runs: by default the newest link run of each (source, target) catalogue pair and the newest dedupe run of
each catalogue (`store.runs.latest_runs`); `runs=` picks others. A rebuild after a watched run changed uses the
choice of the last build (of chosen runs, those still stored).

Stable ids (`carry_ids`): a cluster keeps its id while it exists. Each old id goes to the new cluster holding most
of its old members (ties: the cluster with the smallest product id), so a split leaves the id on its largest
part; a new cluster that receives several old ids (a merge) keeps the oldest, the smallest; a new cluster that
receives none gets a new id. Ids left over are retired (their clusters merged away or dissolved).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import psycopg

from prodmatch.errors import ConfigError
from prodmatch.match.assign import offer_clusters
from prodmatch.store.catalogs import parse_product_ref
from prodmatch.store.runs import (
    CLUSTERS_LOCK,
    cluster_evidence,
    last_cluster_build,
    latest_runs,
    missing_runs,
    new_cluster_ids,
    record_cluster_build,
    stored_clustering,
    write_clustering,
)


@dataclass(frozen=True)
class ClusterBuild:
    """A stored clustering and what changed against the one before."""

    build_id: int
    runs: list[int]  # the runs that fed it
    clusters: int
    products: int  # products in clusters (of two or more)
    largest: int
    kept: int  # clusters that kept an id they had before
    created: int  # clusters with a new id
    retired: int  # ids gone: merged into an older cluster, or dissolved
    moved: int  # products whose cluster changed (joined, left or moved)
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        return (
            f"clustering {self.build_id} from runs {', '.join(map(str, self.runs)) or '(none)'}: "
            f"{self.clusters:,} clusters of {self.products:,} products (largest {self.largest}); "
            f"{self.kept:,} kept their id, {self.created:,} new, {self.retired:,} retired, "
            f"{self.moved:,} products moved in {self.seconds:.2f} s\n"
            "  SELECT * FROM prodmatch.clusters_v ORDER BY cluster_size DESC, cluster_id;"
        )


@dataclass(frozen=True)
class Offer:
    """One product of a cluster, as `prodmatch.offers_of` returns it."""

    catalog: str
    external_id: str
    product_id: int
    title: str | None
    brand: str | None
    price: float | None
    currency: str | None
    is_query: bool


@dataclass(frozen=True)
class Offers:
    """Every offer of one product: the members of its cluster (the product itself first, then cheapest first)."""

    product: str  # CATALOG:EXTERNAL_ID asked for
    cluster_id: int | None  # None: the product is in no cluster
    offers: list[Offer]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        head = (
            f"{self.product}: cluster {self.cluster_id}, {len(self.offers)} offers in "
            f"{len({o.catalog for o in self.offers})} catalogues"
            if self.cluster_id is not None
            else f"{self.product}: in no cluster (no accepted match or duplicate); build with: prodmatch clusters build"
        )
        lines = [head]
        for o in self.offers:
            price = f"{o.price:,.2f} {o.currency or ''}".strip() if o.price is not None else "-"
            mark = "*" if o.is_query else " "
            lines.append(
                f" {mark} {o.catalog}:{o.external_id:<20} {price:>14}  {o.brand or ''} {o.title or ''}"
            )
        return "\n".join(lines)


def build_clusters(conn: psycopg.Connection, runs: Sequence[int] | None = None) -> ClusterBuild:
    """Cluster the products joined by `runs` (default: the newest of each kind, see the module) and store it.

    One transaction: a concurrent build waits for this one (advisory lock), readers see the old or the new.
    """
    started = time.perf_counter()
    requested = sorted(set(runs)) if runs is not None else None
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (CLUSTERS_LOCK,))
        if requested is not None:
            missing = missing_runs(conn, requested)
            if missing:
                raise ConfigError(
                    f"no match run {', '.join(map(str, missing))}; see SELECT * FROM prodmatch.match_runs"
                )
        used = requested if requested is not None else latest_runs(conn)
        evidence = cluster_evidence(conn, used)
        products, components = offer_clusters(
            evidence.left,
            evidence.right,
            evidence.catalogs,
            evidence.compared,
            evidence.same_left,
            evidence.same_right,
            evidence.weights,
        )
        old_products, old_ids = stored_clustering(conn)
        carried, retired = carry_ids(products, components, old_products, old_ids)
        fresh = np.flatnonzero(carried < 0)
        carried[fresh] = new_cluster_ids(
            conn, len(fresh)
        )  # ascending, in order of the clusters' first product
        ids = carried[components]
        moved, dropped, touched = _differences(products, ids, old_products, old_ids, retired)
        write_clustering(conn, products, ids, moved=moved, dropped=dropped, retired=retired, touched=touched)
        build_id = record_cluster_build(conn, used, requested, len(carried), len(products))
    sizes = np.bincount(components) if len(components) else np.zeros(0, dtype=np.int64)
    return ClusterBuild(
        build_id=build_id,
        runs=used,
        clusters=len(carried),
        products=len(products),
        largest=int(sizes.max()) if len(sizes) else 0,
        kept=len(carried) - len(fresh),
        created=len(fresh),
        retired=len(retired),
        moved=int(moved.sum()) + len(dropped),
        seconds=round(time.perf_counter() - started, 3),
    )


def rebuild_clusters(conn: psycopg.Connection) -> ClusterBuild | None:
    """Build again with the last build's choice of runs; None (and nothing written) when none was ever built."""
    last = last_cluster_build(conn)
    conn.commit()
    if last is None:
        return None
    requested = last["requested_runs"]
    if requested is not None:  # chosen runs deleted (or replaced by a re-run) since drop out
        gone = set(missing_runs(conn, requested))
        conn.commit()
        requested = [r for r in requested if r not in gone]
    return build_clusters(conn, requested)


def offers_of(conn: psycopg.Connection, ref: str) -> Offers:
    """Every offer of product CATALOG:EXTERNAL_ID (`prodmatch.offers_of`)."""
    catalog, external_id = parse_product_ref(ref)
    try:
        with conn.transaction():
            rows = conn.execute(
                "SELECT cluster_id, offer_catalog, offer_external_id, product_id, title, brand, price, currency,"
                " is_query FROM prodmatch.offers_of(%s, %s)",
                (catalog, external_id),
            ).fetchall()
    except psycopg.errors.RaiseException as error:
        raise ConfigError(str(error).split("\n")[0].replace("prodmatch: ", "")) from error
    offers = [
        Offer(c, e, p, t, b, float(price) if price is not None else None, cur, q)
        for _, c, e, p, t, b, price, cur, q in rows
    ]
    return Offers(ref, rows[0][0] if rows else None, offers)


# --- the arithmetic, pure numpy ----------------------------------------------------------------------------


def carry_ids(
    products: np.ndarray, components: np.ndarray, old_products: np.ndarray, old_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(id per component, -1 where it needs a new one; retired old ids), by the rule of the module docstring.

    `products` / `components`: the new clustering; `old_products` (sorted) / `old_ids`: the stored one.
    """
    n = int(components.max()) + 1 if len(components) else 0
    carried = np.full(n, -1, dtype=np.int64)
    at = np.searchsorted(old_products, products)
    known = at < len(old_products)
    known[known] = old_products[at[known]] == products[known]
    comp, old = components[known], old_ids[at[known]]
    if len(comp):
        # (old id, component) pairs with their counts, sorted by old id then component: np.unique(axis=0) does
        # the same, at seven times the cost on the 400,000 rows of a large clustering
        order = np.lexsort((comp, old))
        old, comp = old[order], comp[order]
        starts = np.flatnonzero(np.r_[True, (old[1:] != old[:-1]) | (comp[1:] != comp[:-1])])
        pairs = np.stack([old[starts], comp[starts]], axis=1)
        counts = np.diff(np.r_[starts, len(old)])
        # Each old id to the new cluster with most of its members (ties: the lower-numbered cluster).
        order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
        pairs = pairs[order]
        first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
        winners = pairs[first]  # (old id, component)
        # Each cluster keeps the oldest (smallest) id it won.
        by_comp = winners[np.lexsort((winners[:, 0], winners[:, 1]))]
        head = np.r_[True, by_comp[1:, 1] != by_comp[:-1, 1]]
        carried[by_comp[head, 1]] = by_comp[head, 0]
    retired = np.setdiff1d(np.unique(old_ids), carried[carried >= 0])
    return carried, retired


def _differences(
    products: np.ndarray, ids: np.ndarray, old_products: np.ndarray, old_ids: np.ndarray, retired: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask of `products` whose cluster id is new or changed, old products in no cluster now, kept cluster ids
    whose members changed)."""
    # Both product lists are sorted: membership by binary search, not by the sorts of isin / setdiff1d.
    at = np.minimum(np.searchsorted(old_products, products), max(len(old_products) - 1, 0))
    same = (
        (old_products[at] == products) & (old_ids[at] == ids)
        if len(old_products)
        else np.zeros(len(products), bool)
    )
    moved = ~same
    back = np.minimum(np.searchsorted(products, old_products), max(len(products) - 1, 0))
    present = products[back] == old_products if len(products) else np.zeros(len(old_products), bool)
    dropped = old_products[~present]
    left_behind = old_ids[~present | (present & moved[back] if len(products) else present)]
    touched = np.setdiff1d(np.union1d(ids[moved], left_behind), retired)
    return moved, dropped, touched
