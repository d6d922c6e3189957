"""Assignment: which candidate pairs a run keeps, and how they rank.

Threshold filtering, greedy one-to-one assignment (each source and target at most once, best pairs first),
ranks per source, complete-linkage duplicate clusters (no chaining) for dedupe, connected components (the gold
clusters of `quality.metrics.cluster_quality`), and the average linkage that joins accepted pairs into clusters
of offers without chaining lookalikes together (`offer_clusters`: `match.clusters`, `eval --matcher`).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from prodmatch.match.pairs import CandidatePairs


def filter_and_rank(pairs: CandidatePairs, threshold: float | None, one_to_one: bool) -> CandidatePairs:
    """Drop pairs under the threshold, optionally keep a one-to-one assignment, and rank per source."""
    if threshold is not None:
        pairs = pairs.take(pairs.score >= threshold)
    if one_to_one:
        pairs = pairs.take(greedy_assignment(pairs.sources, pairs.targets, pairs.score))
    pairs = pairs.take(np.lexsort((pairs.targets, -pairs.score, pairs.sources)))  # per source: best first
    starts = (
        np.r_[True, pairs.sources[1:] != pairs.sources[:-1]] if len(pairs.sources) else np.array([], bool)
    )
    group_start = (
        np.maximum.accumulate(np.where(starts, np.arange(len(starts)), 0)) if len(starts) else starts
    )
    pairs.ranks = (np.arange(len(starts)) - group_start + 1).astype(np.int64)
    return pairs


def greedy_assignment(sources: np.ndarray, targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mutual one-to-one matching: take pairs from the most similar down; each source and target once."""
    order = np.lexsort((targets, sources, -scores))
    used_sources: set[int] = set()
    used_targets: set[int] = set()
    keep = []
    for i in order:
        s, t = int(sources[i]), int(targets[i])
        if s in used_sources or t in used_targets:
            continue
        used_sources.add(s)
        used_targets.add(t)
        keep.append(i)
    return np.array(keep, dtype=np.int64)


def cluster_duplicates(
    vectors: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray, threshold: float
) -> list[list[int]]:
    """Clusters (lists of row indices, centre first) in which every pair is at least `threshold` similar."""
    passing = (neighbours >= 0) & (similarities >= threshold)
    degree = passing.sum(axis=1)
    order = sorted(range(len(vectors)), key=lambda i: (-int(degree[i]), i))
    assigned = np.zeros(len(vectors), dtype=bool)
    clusters = []
    for centre in order:
        if assigned[centre] or degree[centre] == 0:
            continue
        members = [centre]
        for j, ok in zip(neighbours[centre], passing[centre], strict=True):
            if not ok or assigned[j] or j == centre:
                continue
            if np.all(vectors[members] @ vectors[j] >= threshold):
                members.append(int(j))
        if len(members) > 1:
            assigned[members] = True
            clusters.append(members)
    return clusters


def connected_clusters(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(products, component of each): the connected components of the edges left[i] -- right[i].

    Products are sorted; components are numbered in order of their smallest product.
    """
    products = np.unique(np.concatenate([left, right]))
    if not len(products):
        return products, np.empty(0, dtype=np.int64)
    a, b = np.searchsorted(products, left), np.searchsorted(products, right)
    graph = sp.coo_matrix((np.ones(len(a), dtype=np.int32), (a, b)), shape=(len(products), len(products)))
    _, labels = connected_components(graph, directed=False)  # numbered in order of first node: smallest id
    return products, labels.astype(np.int64)


# Two groups of offers join when at least this share of the pairs between them that a link run compared was
# accepted: a majority of the evidence, the natural cut of average linkage over accepted (1) / not accepted (0).
JOIN_SHARE = 0.5


def offer_clusters(
    left: np.ndarray,
    right: np.ndarray,
    catalogs: tuple[np.ndarray, np.ndarray],
    compared: Collection[tuple[int, int]],
    same_left: np.ndarray | None = None,
    same_right: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    share: float = JOIN_SHARE,
) -> tuple[np.ndarray, np.ndarray]:
    """(products, cluster of each) of the accepted pairs left[i] -- right[i], joined by average linkage.

    Connected components chain: on a marketplace one lookalike accepted between two products' offers joins them,
    and the chains grow into clusters of hundreds. Here groups of offers join greedily, the most strongly linked
    first, while at least `share` of the pairs between two groups that a link run compared were accepted: a pair of
    products from two catalogues that `compared` names (catalogue ids, either order) counts 1 if accepted and 0 if
    not (whether it was a candidate or not: not in a product's first k is evidence against), and a pair inside
    one catalogue counts only where a link run compared that catalogue with itself. Duplicates inside one catalogue
    (`same_left[i]` -- `same_right[i]`, from dedupe runs) are one unit first: a group of duplicates counts once.
    Among merges of equal share, the one whose accepted pairs weigh more (`weights[i]`: pair i's match
    probability, say; default 1) goes first, so a lookalike does not take an offer before its own product's
    offers do. `catalogs`: (product ids, the catalogue of each), covering every product named. Products are
    sorted; clusters (of two or more products) are numbered in order of their smallest product, as
    `connected_clusters` numbers components. Two products joined only by each other always form a cluster; so
    does a group of duplicates.
    """
    empty = np.empty(0, dtype=np.int64)
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    same_left = empty if same_left is None else np.asarray(same_left, dtype=np.int64)
    same_right = empty if same_right is None else np.asarray(same_right, dtype=np.int64)
    products = _sorted_unique(np.concatenate([left, right, same_left, same_right]))
    n = len(products)
    if not n:
        return products, empty
    duplicates = sp.coo_matrix(
        (
            np.ones(len(same_left), dtype=np.int8),
            (np.searchsorted(products, same_left), np.searchsorted(products, same_right)),
        ),
        shape=(n, n),
    )
    units, unit = connected_components(duplicates, directed=False)
    unit_catalog = np.empty(units, dtype=np.int64)
    unit_catalog[unit] = _catalogs_of(products, *catalogs)
    a, b = unit[np.searchsorted(products, left)], unit[np.searchsorted(products, right)]
    weights = np.ones(len(left)) if weights is None else np.asarray(weights, dtype=np.float64)
    apart = a != b
    lo, hi, weights = np.minimum(a, b)[apart], np.maximum(a, b)[apart], weights[apart]
    order = np.lexsort((-weights, hi, lo))  # one edge per pair of units, its heaviest weight
    lo, hi, weights = lo[order], hi[order], weights[order]
    first = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])] if len(lo) else np.zeros(0, bool)
    edges, weights = np.stack([lo[first], hi[first]], axis=1), weights[first]
    graph = sp.coo_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(units, units)
    )
    _, component = connected_components(graph, directed=False)
    group = np.arange(units)
    settled = _merges_whole(edges, component, unit_catalog, compared, share)
    whole = settled[component[edges[:, 0]]]
    smallest = np.full(len(settled), units, dtype=np.int64)
    np.minimum.at(smallest, component[edges[whole].ravel()], edges[whole].ravel())
    group[edges[whole].ravel()] = smallest[component[edges[whole].ravel()]]
    if not whole.all():
        compared_pairs = {(int(c), int(d)) for c, d in compared} | {(int(d), int(c)) for c, d in compared}
        # one pass over every other component: merges follow edges, so components never meet
        linked = _average_linkage(edges[~whole], weights[~whole], unit_catalog, compared_pairs, share)
        members = np.fromiter(linked.keys(), dtype=np.int64, count=len(linked))
        group[members] = np.fromiter(linked.values(), dtype=np.int64, count=len(linked))
    cluster = group[unit]
    keep = np.bincount(cluster, minlength=units)[cluster] >= 2
    products, cluster = products[keep], cluster[keep]
    # number the clusters in order of their smallest product: products are sorted, so of their first position
    first = np.full(units, len(products), dtype=np.int64)
    np.minimum.at(first, cluster, np.arange(len(products)))
    named = np.flatnonzero(first < len(products))
    number = np.empty(units, dtype=np.int64)
    number[named[np.argsort(first[named], kind="stable")]] = np.arange(len(named))
    return products, number[cluster]


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _catalogs_of(products: np.ndarray, ids: np.ndarray, catalogs: np.ndarray) -> np.ndarray:
    """The catalogue of each of `products` by (ids, catalogs); a product with none is an error."""
    ids, catalogs = np.asarray(ids, dtype=np.int64), np.asarray(catalogs, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ids, catalogs = ids[order], catalogs[order]
    at = np.minimum(np.searchsorted(ids, products), max(len(ids) - 1, 0))
    found = (ids[at] == products) if len(ids) else np.zeros(len(products), dtype=bool)
    if not found.all():
        raise ValueError(f"no catalogue given for product {int(products[~found][0])}")
    return catalogs[at]


def _merges_whole(
    edges: np.ndarray,
    component: np.ndarray,
    unit_catalog: np.ndarray,
    compared: Collection[tuple[int, int]],
    share: float,
) -> np.ndarray:
    """Per component: whether average linkage is sure to join it whole, so the greedy merges need not run.

    With `share` <= 1/2: a component of two or three units always joins (an accepted pair; then at least one
    accepted pair of at most two), and so does one of four units from two catalogues compared only with each
    other (its groups are pairs across the two, or one unit against three, so at least one of at most two pairs
    between them is accepted). At any share, a complete component joins (every pair in it that a link run
    compared was accepted: every linkage is 1). Lone pairs and marketplace stars (one source, many offers) are
    these."""
    n = int(component.max()) + 1 if len(component) else 0
    on_edge = np.unique(edges.ravel())
    size = np.bincount(component[on_edge], minlength=n)
    accepted = np.bincount(component[edges[:, 0]], minlength=n)
    present, catalog = np.unique(unit_catalog[on_edge], return_inverse=True)
    index = {int(c): i for i, c in enumerate(present)}
    marked = np.zeros((len(present), len(present)), dtype=np.float64)
    for c, d in compared:
        if int(c) in index and int(d) in index:
            marked[index[int(c)], index[int(d)]] = marked[index[int(d)], index[int(c)]] = 1.0
    counts = sp.csr_matrix(
        (np.ones(len(on_edge)), (component[on_edge], catalog)), shape=(n, len(present))
    )  # units of each catalogue per component (duplicates summed)
    across = marked - np.diag(np.diag(marked))
    possible = 0.5 * np.asarray(counts.multiply(counts @ across).sum(axis=1)).ravel()
    within = counts.multiply(counts) - counts  # n * (n - 1) per catalogue compared with itself
    possible += 0.5 * np.asarray(within @ np.diag(marked)).ravel()
    catalogs = np.diff(counts.indptr)  # catalogues per component (rows of a csr matrix: its stored entries)
    alone = np.asarray((counts @ np.diag(marked)) == 0).ravel() if len(present) else np.ones(n, dtype=bool)
    small = (size <= 3) | ((size == 4) & (catalogs == 2) & alone)
    return (small & (share <= 0.5)) | (accepted >= possible)


def _average_linkage(
    edges: np.ndarray,
    weights: np.ndarray,
    unit_catalog: np.ndarray,
    compared: set[tuple[int, int]],
    share: float,
) -> dict[int, int]:
    """{unit: its group's representative (smallest unit)} after greedy average linkage over the accepted unit
    pairs `edges` with their `weights` (see `offer_clusters`)."""
    links: dict[int, dict[int, list[float]]] = {}  # group -> group -> [accepted pairs, their weight]
    for (a, b), weight in zip(edges.tolist(), weights.tolist(), strict=True):
        links.setdefault(a, {})[b] = [1, weight]
        links.setdefault(b, {})[a] = [1, weight]
    counts = {u: {int(unit_catalog[u]): 1} for u in links}  # catalogue -> units of the group
    members = {u: [u] for u in links}
    version = dict.fromkeys(links, 0)

    def linkage(x: int, y: int) -> tuple[float, float]:
        accepted, weight = links[x][y]
        possible = sum(
            m * n for c, m in counts[x].items() for d, n in counts[y].items() if (c, d) in compared
        )
        possible = max(possible, accepted)
        return accepted / possible, weight / possible

    heap = [(*(-v for v in linkage(a, b)), a, b, 0, 0) for a, b in edges.tolist()]
    heapq.heapify(heap)
    while heap:
        negative, _, a, b, seen_a, seen_b = heapq.heappop(heap)
        if version.get(a) != seen_a or version.get(b) != seen_b or -negative < share:
            continue
        for w, (accepted, weight) in links.pop(b).items():  # b joins a
            del links[w][b]
            if w != a:
                both = links[a].setdefault(w, [0, 0.0])
                both[0] += accepted
                both[1] += weight
                links[w][a] = both
        for catalog, n in counts.pop(b).items():
            counts[a][catalog] = counts[a].get(catalog, 0) + n
        members[a] += members.pop(b)
        del version[b]
        version[a] += 1
        for w in links[a]:
            value, weighed = linkage(a, w)
            if value >= share:
                x, y = min(a, w), max(a, w)
                heapq.heappush(heap, (-value, -weighed, x, y, version[x], version[y]))
    return {u: representative for representative, group in members.items() for u in group}
