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
# Weights count in steps of 2**-20 (about a millionth; a stored probability is a float4, good to six digits):
# their sums are then exact whatever order pairs join in, so equal shares stay equal and ties break by ids alone.
WEIGHT_STEP = 2.0**-20


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
    probability, say; default 1; counted in steps of WEIGHT_STEP) goes first, so a lookalike does not take an
    offer before its own product's offers do; then the smaller ids. `catalogs`: (product ids, the catalogue of
    each), covering every product named. Products are sorted; clusters (of two or more products) are numbered in
    order of their smallest product, as `connected_clusters` numbers components. Two products joined only by each
    other always form a cluster; so does a group of duplicates. Cost: see `_average_linkage` (rounds of joins,
    vectorised, then one at a time for the rest).
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
    weights = np.rint(np.nan_to_num(weights) / WEIGHT_STEP).astype(np.int64)  # sums exact in any order
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
        # one pass over every other component: merges follow edges, so components never meet
        members, representative = _average_linkage(
            edges[~whole], weights[~whole], unit_catalog, compared, share
        )
        group[members] = representative
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


def cluster_view(
    pairs: CandidatePairs, probability: np.ndarray, kept: np.ndarray, source_id: int = 0, target_id: int = 1
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The clustering of the accepted pairs `pairs[kept]` (source products of catalogue `source_id`, targets of
    `target_id`, the same id for a catalogue linked with itself), joined as `clusters build` joins them
    (`offer_clusters`, `probability` breaking ties), and whether each of `pairs` is accepted with its two products
    in one cluster: the cluster view, pair by pair (`link --clustered`, `eval --matcher`'s `matcher clusters`)."""
    left, right = pairs.sources[kept], pairs.targets[kept]
    catalogs = (np.r_[left, right], np.r_[np.full(len(left), source_id), np.full(len(right), target_id)])
    found = offer_clusters(left, right, catalogs, [(source_id, target_id)], weights=probability[kept])
    together = np.zeros(len(probability), dtype=bool)
    together[kept] = same_cluster(*found, left, right)
    return found, together


def same_cluster(
    products: np.ndarray, clusters: np.ndarray, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """Whether left[i] and right[i] are in one cluster of (products, clusters) (sorted products)."""
    if not len(products):
        return np.zeros(len(left), dtype=bool)

    def cluster_of(ids: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(products, ids), len(products) - 1)
        return np.where(products[at] == ids, clusters[at], -1)

    a, b = cluster_of(left), cluster_of(right)
    return (a >= 0) & (a == b)


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


def _compared_catalogs(
    catalogs: np.ndarray, compared: Collection[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the catalogues present in `catalogs`, the index of each entry's among them, a symmetric 0/1 matrix of
    which of them a run compared: `compared` pairs of catalogue ids, either order)."""
    present, catalog = np.unique(catalogs, return_inverse=True)
    index = {int(c): i for i, c in enumerate(present)}
    marked = np.zeros((len(present), len(present)), dtype=np.float64)
    for c, d in compared:
        if int(c) in index and int(d) in index:
            marked[index[int(c)], index[int(d)]] = marked[index[int(d)], index[int(c)]] = 1.0
    return present, catalog, marked


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
    present, catalog, marked = _compared_catalogs(unit_catalog[on_edge], compared)
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
    compared: Collection[tuple[int, int]],
    share: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(units, the representative of each one's group: its smallest unit) after greedy average linkage over the
    accepted unit pairs `edges` (smaller unit first) with their `weights` (integers: see `offer_clusters`).

    Average linkage is reducible: a group made of two others is never more strongly linked to a third than the
    stronger of the two was. So two groups that are each other's best partner, strictly (no other partner of
    either as strongly linked, weights included), are joined by the one-at-a-time greedy order sooner or later, and
    nothing it does meanwhile involves them: every such pair can join at once. Rounds of those joins run
    vectorised while they still join many; the one-at-a-time greedy (`_greedy_linkage`) finishes the rest, ties
    and long chains, with the same result as running it alone."""
    nodes = _sorted_unique(edges.ravel())
    present, catalog, marked = _compared_catalogs(unit_catalog[nodes], compared)
    compared_catalogs = sp.csr_matrix(marked)
    size = int(nodes[-1]) + 1
    representative = np.arange(size)
    x, y = edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)
    accepted, weight = np.ones(len(x), dtype=np.int64), np.asarray(weights, dtype=np.int64)
    while True:
        counts = sp.csr_matrix(
            (np.ones(len(nodes)), (representative[nodes], catalog)), shape=(size, len(present))
        )  # units of each catalogue per group
        possible = np.asarray(counts[x].multiply(counts[y] @ compared_catalogs).sum(axis=1)).ravel()
        possible = np.maximum(np.rint(possible).astype(np.int64), accepted)
        # a group with no link at the share can never join: whatever its partners join, its link to their group
        # stays under the stronger of its links to them (reducibility). Its links are dropped.
        strong = accepted / possible >= share
        active = np.zeros(size, dtype=bool)
        active[x[strong]] = active[y[strong]] = True
        live = active[x] & active[y]
        x, y, accepted, weight, possible = x[live], y[live], accepted[live], weight[live], possible[live]
        if not len(x):
            break
        joined = _mutual_best(x, y, accepted / possible, weight / possible, share, size)
        if not joined.any() or joined.sum() * _ROUND_SHARE < len(x):
            break
        step = np.arange(size)
        step[y[joined]] = x[joined]
        representative = step[representative]
        x, y, accepted, weight = _relinked(step[x], step[y], accepted, weight, size)
    linked = _greedy_linkage(x, y, accepted, weight, counts, marked, share)
    final = np.arange(size)
    if linked:
        final[np.fromiter(linked.keys(), dtype=np.int64)] = np.fromiter(linked.values(), dtype=np.int64)
    return nodes, final[representative[nodes]]


# Rounds of simultaneous joins go on while each joins at least one pair per this many links left: fewer (a chain
# whose links weaken along it joins one pair a round), and the one-at-a-time greedy is cheaper.
_ROUND_SHARE = 100


def _mutual_best(
    x: np.ndarray, y: np.ndarray, first: np.ndarray, second: np.ndarray, share: float, size: int
) -> np.ndarray:
    """Which links x[i] -- y[i] join two groups that are each other's strictly best partner ((first, second)
    highest, no other partner tied) with first >= share."""
    source, target = np.r_[x, y], np.r_[y, x]
    high, low = np.r_[first, first], np.r_[second, second]
    order = np.lexsort((-low, -high, source))
    source, target, high, low = source[order], target[order], high[order], low[order]
    head = np.r_[True, source[1:] != source[:-1]]
    tied = np.r_[(source[1:] == source[:-1]) & (high[1:] == high[:-1]) & (low[1:] == low[:-1]), False]
    best = np.full(size, -1, dtype=np.int64)
    best[source[head]] = np.where(tied[head], -1, target[head])
    return (best[x] == y) & (best[y] == x) & (first >= share)


def _relinked(
    x: np.ndarray, y: np.ndarray, accepted: np.ndarray, weight: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The links between groups after joins (`x`, `y`: each end's group now): one per pair of groups, smaller
    first, accepted pairs and weights summed; links inside one group dropped."""
    lo, hi = np.minimum(x, y), np.maximum(x, y)
    apart = lo != hi
    pair, where = np.unique(lo[apart] * size + hi[apart], return_inverse=True)
    total = np.bincount(where, weights=accepted[apart]).astype(np.int64)
    weighed = np.rint(np.bincount(where, weights=weight[apart])).astype(np.int64)
    return pair // size, pair % size, total, weighed


def _greedy_linkage(
    x: np.ndarray,
    y: np.ndarray,
    accepted: np.ndarray,
    weight: np.ndarray,
    counts: sp.csr_matrix,
    marked: np.ndarray,
    share: float,
) -> dict[int, int]:
    """{group: its final group's representative (smallest)} after the one-at-a-time greedy average linkage over the
    links x[i] -- y[i] (accepted pairs and their summed weights between two groups; `counts`: the units of each
    catalogue in each group, `marked`: which catalogues a run compared)."""
    links: dict[int, dict[int, list[int]]] = {}  # group -> group -> [accepted pairs, their weight]
    for a, b, n, w in zip(x.tolist(), y.tolist(), accepted.tolist(), weight.tolist(), strict=True):
        links.setdefault(a, {})[b] = [n, w]
        links.setdefault(b, {})[a] = [n, w]
    compared = set(zip(*(index.tolist() for index in np.nonzero(marked)), strict=True))
    counts = counts.tocsr()
    catalogs = {
        g: dict(
            zip(
                counts.indices[counts.indptr[g] : counts.indptr[g + 1]].tolist(),
                np.rint(counts.data[counts.indptr[g] : counts.indptr[g + 1]]).astype(np.int64).tolist(),
                strict=True,
            )
        )
        for g in links
    }  # catalogue -> units of the group
    members = {g: [g] for g in links}
    version = dict.fromkeys(links, 0)

    def linkage(a: int, b: int) -> tuple[float, float]:
        hits, weighed = links[a][b]
        possible = sum(
            m * n for c, m in catalogs[a].items() for d, n in catalogs[b].items() if (c, d) in compared
        )
        possible = max(possible, hits)
        return hits / possible, weighed / possible

    heap = [(*(-v for v in linkage(a, b)), a, b, 0, 0) for a, b in zip(x.tolist(), y.tolist(), strict=True)]
    heapq.heapify(heap)
    while heap:
        negative, _, a, b, seen_a, seen_b = heapq.heappop(heap)
        if version.get(a) != seen_a or version.get(b) != seen_b or -negative < share:
            continue
        for w, (hits, weighed) in links.pop(b).items():  # b joins a
            del links[w][b]
            if w != a:
                both = links[a].setdefault(w, [0, 0])
                both[0] += hits
                both[1] += weighed
                links[w][a] = both
        for catalog, n in catalogs.pop(b).items():
            catalogs[a][catalog] = catalogs[a].get(catalog, 0) + n
        members[a] += members.pop(b)
        del version[b]
        version[a] += 1
        for w in links[a]:
            value, weighed = linkage(a, w)
            if value >= share:
                lo, hi = min(a, w), max(a, w)
                heapq.heappush(heap, (-value, -weighed, lo, hi, version[lo], version[hi]))
    return {g: representative for representative, group in members.items() for g in group}
