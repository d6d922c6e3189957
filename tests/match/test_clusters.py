"""Clusters of offers: connected components of accepted pairs and duplicates, stable ids, clusters_v / offers_of,
the `clusters` commands, `link --watch` keeping them, and a source with many true targets."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from builders import REPO
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from prodmatch.cli import main
from prodmatch.errors import ConfigError
from prodmatch.ingest.load import ingest_file
from prodmatch.match import link
from prodmatch.match.assign import connected_clusters
from prodmatch.match.clusters import _differences, build_clusters, carry_ids, offers_of
from prodmatch.match.pairs import CandidatePairs
from prodmatch.match.watch import watch_link
from prodmatch.quality.matchers import evaluate_matcher
from prodmatch.store.catalogs import ensure_catalog
from prodmatch.store.runs import replace_run, store_pairs

# --- the arithmetic ------------------------------------------------------------------------------------------


def test_connected_clusters_join_chains_and_number_clusters_by_their_smallest_product():
    products, components = connected_clusters(np.array([7, 3, 20]), np.array([11, 5, 21]))
    assert products.tolist() == [3, 5, 7, 11, 20, 21]
    assert components.tolist() == [0, 0, 1, 1, 2, 2]  # 7-11 and 3-5 stay apart: no edge joins them
    products, components = connected_clusters(np.array([7, 3, 20, 11]), np.array([11, 5, 21, 5]))
    assert components.tolist() == [0, 0, 0, 0, 1, 1]  # 7-11-5-3: a chain is one cluster
    empty, none = connected_clusters(np.empty(0, np.int64), np.empty(0, np.int64))
    assert len(empty) == len(none) == 0


def _carry(new: dict[int, int], old: dict[int, int]) -> tuple[dict[int, int], list[int]]:
    """carry_ids on {product: component} and {product: old id}; {component: id (-1 new)}, retired ids."""
    products = np.array(sorted(new), dtype=np.int64)
    components = np.array([new[p] for p in products.tolist()], dtype=np.int64)
    old_products = np.array(sorted(old), dtype=np.int64)
    old_ids = np.array([old[p] for p in old_products.tolist()], dtype=np.int64)
    carried, retired = carry_ids(products, components, old_products, old_ids)
    return dict(enumerate(carried.tolist())), retired.tolist()


def test_a_cluster_that_still_exists_keeps_its_id_and_a_new_one_gets_none():
    carried, retired = _carry({1: 0, 2: 0, 3: 0, 8: 1, 9: 1}, {1: 40, 2: 40})
    assert carried == {0: 40, 1: -1} and retired == []


def test_a_merge_keeps_the_oldest_id_and_retires_the_other():
    carried, retired = _carry({1: 0, 2: 0, 3: 0, 4: 0, 5: 0}, {1: 52, 2: 52, 3: 52, 4: 17, 5: 17})
    assert carried == {0: 17} and retired == [52]  # the smaller id is the older one, even with fewer members


def test_a_split_keeps_the_id_on_the_part_with_most_of_its_members():
    carried, retired = _carry({1: 0, 2: 0, 3: 1, 4: 1, 5: 1}, dict.fromkeys([1, 2, 3, 4, 5], 9))
    assert carried == {0: -1, 1: 9} and retired == []
    tie, _ = _carry({1: 0, 2: 1}, {1: 9, 2: 9})  # a tie: the part with the smallest product
    assert tie == {0: 9, 1: -1}


def test_a_dissolved_cluster_retires_its_id():
    carried, retired = _carry({1: 0, 2: 0}, {1: 3, 2: 3, 6: 4, 7: 4})
    assert carried == {0: 3} and retired == [4]


def _carry_by_the_rule(new: dict[int, int], old: dict[int, int]) -> tuple[dict[int, int], list[int]]:
    """The module docstring's rule, written plainly: each old id to the new cluster holding most of its old
    members (ties: the lower-numbered cluster), each cluster the smallest id it won, the rest retired."""
    won: dict[int, list[int]] = {}
    for old_id in set(old.values()):
        counts: dict[int, int] = {}
        for product, cluster_id in old.items():
            if cluster_id == old_id and product in new:
                counts[new[product]] = counts.get(new[product], 0) + 1
        if counts:
            winner = min(counts, key=lambda c: (-counts[c], c))
            won.setdefault(winner, []).append(old_id)
    carried = {c: min(won[c]) if c in won else -1 for c in sorted(set(new.values()))}
    return carried, sorted(set(old.values()) - set(carried.values()))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.integers(1, 40), st.integers(0, 6), min_size=1),
    st.dictionaries(st.integers(1, 40), st.integers(100, 106)),
)
def test_ids_are_carried_by_the_rule_on_any_clustering(groups, old):
    # components numbered in order of their smallest product, as connected_clusters numbers them
    order = sorted(set(groups.values()), key=lambda g: min(p for p in groups if groups[p] == g))
    new = {product: order.index(group) for product, group in groups.items()}
    assert _carry(new, old) == _carry_by_the_rule(new, old)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.integers(1, 30), st.integers(100, 106)),
    st.dictionaries(st.integers(1, 30), st.integers(100, 106)),
    st.sets(st.integers(100, 106)),
)
def test_the_differences_written_are_those_of_the_two_clusterings(new, old, retired):
    # what a rebuild writes: products whose cluster id is new or changed, products in no cluster now, and kept
    # cluster ids whose members changed (the plain set arithmetic, against the binary searches of _differences)
    products, ids = (
        np.array(sorted(new), dtype=np.int64),
        np.array([new[p] for p in sorted(new)], dtype=np.int64),
    )
    old_products = np.array(sorted(old), dtype=np.int64)
    old_ids = np.array([old[p] for p in sorted(old)], dtype=np.int64)
    moved, dropped, touched = _differences(products, ids, old_products, old_ids, np.array(sorted(retired)))
    assert products[moved].tolist() == [p for p in sorted(new) if old.get(p) != new[p]]
    assert dropped.tolist() == sorted(set(old) - set(new))
    left_behind = {old[p] for p in old if p not in new or old[p] != new[p]}
    assert touched.tolist() == sorted(({new[p] for p in new if old.get(p) != new[p]} | left_behind) - retired)


# --- stored clusterings ------------------------------------------------------------------------------------


def _products(conn, catalog: str, *items: tuple[str, float]) -> dict[str, int]:
    catalog_id = ensure_catalog(conn, catalog)
    ids = {}
    for external_id, price in items:
        ids[external_id] = conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title, price, currency)"
            " VALUES (%s, %s, %s, %s, 'EUR') RETURNING id",
            (catalog_id, external_id, f"{catalog} {external_id}", price),
        ).fetchone()[0]
    return ids


def _link_run(conn, source: str, target: str, accepted: list[tuple[int, int]], tag: str = "") -> int:
    """A stored link run whose accepted pairs are `accepted` (as `link` stores one)."""
    source_id, target_id = ensure_catalog(conn, source), ensure_catalog(conn, target)
    run_id = replace_run(conn, "link", source_id, target_id, None, {"k": 5, "tag": tag})
    s, t = (np.array(x, dtype=np.int64) for x in zip(*accepted, strict=True))
    pairs = CandidatePairs(s, t, np.ones(len(s), np.float32), {"accepted": np.ones(len(s), bool)})
    pairs.ranks = np.ones(len(s), np.int64)
    store_pairs(conn, run_id, pairs)
    conn.commit()
    return run_id


def _dedupe_run(conn, catalog: str, centre: int, members: list[int]) -> int:
    run_id = replace_run(conn, "dedupe", ensure_catalog(conn, catalog), None, None, {"threshold": 0.9})
    for product_id in [centre, *members]:
        conn.execute(
            "INSERT INTO prodmatch.duplicate_clusters (run_id, cluster_id, product_id, is_centre) VALUES (%s, 1, %s, %s)",
            (run_id, product_id, product_id == centre),
        )
    conn.commit()
    return run_id


def _clusters(conn) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for cluster_id, catalog, external_id in conn.execute(
        "SELECT cluster_id, catalog, external_id FROM prodmatch.clusters_v"
    ):
        out.setdefault(cluster_id, set()).add(f"{catalog}:{external_id}")
    conn.commit()
    return out


@pytest.fixture
def shops(conn):
    """Three shops; kettle and lamp sold in several, a kettle listed twice in shop b."""
    a = _products(conn, "a", ("kettle", 30.0), ("lamp", 20.0), ("mug", 5.0))
    b = _products(conn, "b", ("kettle", 28.5), ("kettle-2", 29.0), ("lamp", 22.0), ("mug", 6.0))
    c = _products(conn, "c", ("kettle", 31.0), ("lamp", 19.5))
    conn.commit()
    return a, b, c


def test_build_joins_link_runs_across_catalogues_and_dedupe_runs_inside_one(conn, shops):
    a, b, c = shops
    _link_run(conn, "a", "b", [(a["kettle"], b["kettle"]), (a["lamp"], b["lamp"])])
    _link_run(conn, "c", "b", [(c["kettle"], b["kettle"])])
    _dedupe_run(conn, "b", b["kettle"], [b["kettle-2"]])
    built = build_clusters(conn)
    assert (built.clusters, built.products, built.largest, built.created) == (2, 6, 4, 2)
    clusters = sorted(_clusters(conn).values(), key=len)
    assert clusters == [{"a:lamp", "b:lamp"}, {"a:kettle", "b:kettle", "b:kettle-2", "c:kettle"}]
    sizes = conn.execute(
        "SELECT DISTINCT cluster_size, catalogs FROM prodmatch.clusters_v ORDER BY 1"
    ).fetchall()
    assert sizes == [(2, 2), (4, 3)]
    sold_in_three = conn.execute(  # docs/sql.md, "Many offers per product"
        "SELECT cluster_id, min(title) AS title, count(*) AS offers, min(price) AS cheapest, max(price) AS dearest"
        " FROM prodmatch.clusters_v WHERE catalogs >= 3 GROUP BY cluster_id ORDER BY offers DESC"
    ).fetchall()
    assert [(r[2], float(r[3]), float(r[4])) for r in sold_in_three] == [(4, 28.5, 31.0)]


def test_a_lookalike_accepted_between_two_products_does_not_chain_their_offers(conn):
    """On a marketplace a lookalike accepted between two products' offers joined them in one connected
    component; average linkage keeps them apart (and keeps every offer of each)."""
    a = _products(conn, "a", ("kettle-1", 30.0), ("kettle-2", 31.0), ("lamp-1", 20.0), ("lamp-2", 21.0))
    b = _products(conn, "b", ("kettle-1", 29.0), ("kettle-2", 28.0), ("kettle-3", 32.0))
    b |= _products(conn, "b", ("lamp-1", 19.0), ("lamp-2", 22.0))
    kettle = [(a[f"kettle-{i}"], b[f"kettle-{j}"]) for i in (1, 2) for j in (1, 2, 3)]
    lamp = [(a[f"lamp-{i}"], b[f"lamp-{j}"]) for i in (1, 2) for j in (1, 2)]
    _link_run(conn, "a", "b", [*kettle, *lamp, (a["kettle-2"], b["lamp-1"])])
    built = build_clusters(conn)
    assert (built.clusters, built.products, built.largest) == (2, 9, 5)
    assert sorted(_clusters(conn).values(), key=len) == [
        {"a:lamp-1", "a:lamp-2", "b:lamp-1", "b:lamp-2"},
        {"a:kettle-1", "a:kettle-2", "b:kettle-1", "b:kettle-2", "b:kettle-3"},
    ]


def test_ids_survive_a_rebuild_a_join_a_merge_and_a_split(conn, shops):
    a, b, c = shops
    _link_run(conn, "a", "b", [(a["kettle"], b["kettle"]), (a["lamp"], b["lamp"])])
    _link_run(conn, "c", "b", [(c["lamp"], b["mug"])])
    build_clusters(conn)
    ids = {frozenset(m): i for i, m in _clusters(conn).items()}
    kettle, lamp, mug = (
        ids[frozenset(x)] for x in ({"a:kettle", "b:kettle"}, {"a:lamp", "b:lamp"}, {"c:lamp", "b:mug"})
    )
    assert build_clusters(conn).kept == 3 and _clusters(conn).keys() == {kettle, lamp, mug}  # nothing changed

    # a newer c -> b run: c's kettle joins the kettle, and c's lamp now joins the lamp with b's mug (a merge)
    _link_run(
        conn, "c", "b", [(c["kettle"], b["kettle"]), (c["lamp"], b["lamp"]), (c["lamp"], b["mug"])], tag="2"
    )
    merged = build_clusters(conn)
    assert merged.retired == 1 and merged.created == 0
    clusters = _clusters(conn)
    assert clusters[kettle] == {"a:kettle", "b:kettle", "c:kettle"}
    assert clusters[min(lamp, mug)] == {"a:lamp", "b:lamp", "c:lamp", "b:mug"} and len(clusters) == 2

    # an even newer a -> b run takes a's lamp away: the lamp cluster splits, the id stays with the larger part
    _link_run(conn, "a", "b", [(a["kettle"], b["kettle"]), (a["mug"], b["mug"])], tag="3")
    build_clusters(conn)
    clusters = _clusters(conn)
    assert clusters[kettle] == {"a:kettle", "b:kettle", "c:kettle"}
    assert clusters[min(lamp, mug)] == {"b:lamp", "c:lamp", "b:mug", "a:mug"}
    assert len(clusters) == 2  # a:lamp is now alone: in no cluster


def test_chosen_runs_and_an_unknown_run(conn, shops):
    a, b, c = shops
    first = _link_run(conn, "a", "b", [(a["kettle"], b["kettle"])])
    _link_run(conn, "a", "b", [(a["lamp"], b["lamp"])], tag="newer")
    assert list(_clusters(conn).values()) == []
    build_clusters(conn)
    assert list(_clusters(conn).values()) == [{"a:lamp", "b:lamp"}]  # default: the newest a -> b run only
    chosen = build_clusters(conn, [first])
    assert chosen.runs == [first] and list(_clusters(conn).values()) == [{"a:kettle", "b:kettle"}]
    with pytest.raises(Exception, match="no match run 999"):
        build_clusters(conn, [first, 999])


def test_offers_of_lists_every_offer_with_prices_and_shops(conn, shops):
    a, b, c = shops
    _link_run(conn, "a", "b", [(a["kettle"], b["kettle"])])
    _link_run(conn, "c", "b", [(c["kettle"], b["kettle"])])
    build_clusters(conn)
    rows = conn.execute(
        "SELECT offer_catalog, offer_external_id, price, is_query FROM prodmatch.offers_of('c', 'kettle')"
    ).fetchall()
    assert [(r[0], r[1], float(r[2]), r[3]) for r in rows] == [
        ("c", "kettle", 31.0, True),  # the product asked for first, then cheapest first
        ("b", "kettle", 28.5, False),
        ("a", "kettle", 30.0, False),
    ]
    alone = offers_of(conn, "a:mug")
    assert alone.cluster_id is None and [o.external_id for o in alone.offers] == ["mug"]
    with pytest.raises(Exception, match="no product a:nothing"):
        offers_of(conn, "a:nothing")
    example = (REPO / "sql" / "examples" / "08_offers_of_a_product.sql").read_text()
    shown = conn.execute(example).fetchall()
    conn.commit()
    assert len(shown) == 3 and {r[1] for r in shown} == {"a", "b", "c"}


def test_cli_clusters_build_and_show(settings, conn, shops):
    a, b, c = shops
    run = _link_run(conn, "a", "b", [(a["kettle"], b["kettle"]), (a["lamp"], b["lamp"])])
    base = ["--database-url", settings.database_url]
    runner = CliRunner()
    built = runner.invoke(main, [*base, "clusters", "build", "--run", str(run), "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["clusters"] == 2 and json.loads(built.stdout)["runs"] == [run]
    shown = runner.invoke(main, [*base, "clusters", "show", "b:kettle"])
    assert shown.exit_code == 0 and "2 offers in 2 catalogues" in shown.output and "a:kettle" in shown.output
    as_json = json.loads(runner.invoke(main, [*base, "clusters", "show", "a:lamp", "--json"]).stdout)
    assert {o["catalog"] for o in as_json["offers"]} == {"a", "b"} and as_json["cluster_id"] is not None
    bad = runner.invoke(main, [*base, "clusters", "show", "kettle"])
    assert bad.exit_code == 1 and "CATALOG:EXTERNAL_ID" in bad.output
    unknown = runner.invoke(main, [*base, "clusters", "build", "--run", "424242"])
    assert unknown.exit_code == 1 and "no match run 424242" in unknown.output


def test_a_hundred_thousand_products_cluster_and_keep_their_ids_in_well_under_seconds():
    rng = np.random.default_rng(0)
    before = connected_clusters(rng.integers(1, 100_001, 80_000), rng.integers(1, 100_001, 80_000))
    left, right = rng.integers(1, 100_001, 80_000), rng.integers(1, 100_001, 80_000)
    started = time.perf_counter()
    products, components = connected_clusters(left, right)
    carried, retired = carry_ids(products, components, before[0], before[1] + 1)
    assert time.perf_counter() - started < 5.0
    assert len(products) > 50_000 and len(carried) == components.max() + 1
    assert len(np.unique(carried[carried >= 0])) == (carried >= 0).sum()  # an id goes to one cluster at most


# --- link --watch keeps the clusters ------------------------------------------------------------------------


def _wait_for(conn, query: str, params: tuple, watcher: dict, timeout: float = 120.0):
    """The first row of `query` once it has one (polling; generous for a busy machine), else a failure."""
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(query, params).fetchone()
        conn.commit()
        if row is not None and row[0] is not None:
            return row
        assert watcher.get("error") is None, watcher["error"]
        assert time.monotonic() < deadline, f"nothing after {timeout} s: {query}"
        time.sleep(0.2)


def test_link_watch_puts_a_new_offer_into_the_cluster_it_joins_and_keeps_the_id(settings, conn, tmp_path):
    (tmp_path / "shop.csv").write_text(
        "id,title,brand,price,currency\n"
        "S1,Philips kettle HD9350 1.7 l,Philips,49,EUR\n"
        "S2,Sony PS-LX350H turntable,Sony,199,EUR\n"
        "S3,Bosch cordless drill GSR 18V,Bosch,89,EUR\n"
    )
    (tmp_path / "rival.csv").write_text(
        "id,title,brand,price,currency\n"
        "R1,Philips HD9350/90 kettle 1.7l,Philips,52,EUR\n"
        "R2,SONY pslx350h Turntable,SONY,205,EUR\n"
        "R3,Bosch GSR 18V cordless drill,Bosch,92,EUR\n"
    )
    ingest_file(conn, tmp_path / "shop.csv", "shop")
    ingest_file(conn, tmp_path / "rival.csv", "rival")
    conn.commit()
    run = link(conn, "shop", "rival", k=2, space="lexical")  # each source's best lexical candidate
    build_clusters(conn)
    kettle = offers_of(conn, "rival:R1")
    assert {o.external_id for o in kettle.offers} == {"S1", "R1"}
    watcher: dict = {}
    stop = threading.Event()

    def follow() -> None:
        try:
            watch_link(
                settings,
                run.run_id,
                stop=stop,
                poll_seconds=0.2,
                on_pass=lambda p: watcher.update(last=p, passes=[*watcher.get("passes", []), p]),
            )
        except BaseException as error:  # reported by _wait_for
            watcher["error"] = error

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while "last" not in watcher:  # the first pass (the whole run) is done
            assert watcher.get("error") is None and time.monotonic() < deadline, watcher
            time.sleep(0.1)
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, price, currency)"
            " SELECT catalog_id, 'S9', 'Philips kettle HD9350 1.7 l white', brand, 47, currency"
            " FROM prodmatch.products WHERE external_id = 'S1'"
        )
        conn.commit()
        (joined,) = _wait_for(
            conn,
            "SELECT cluster_id FROM prodmatch.clusters_v WHERE catalog = 'shop' AND external_id = 'S9'",
            (),
            watcher,
        )
        assert joined == kettle.cluster_id  # the new offer carries the existing cluster's id
        now = offers_of(conn, "rival:R1")
        assert now.cluster_id == kettle.cluster_id and {o.external_id for o in now.offers} == {
            "S1",
            "S9",
            "R1",
        }
        assert watcher["last"].clusters is not None
        # A pass that re-scores without changing what is accepted (a new price) leaves the clusters as built:
        # no rebuild, which costs seconds on a large clustering.
        builds = conn.execute("SELECT count(*) FROM prodmatch.cluster_builds").fetchone()[0]
        seen = len(watcher["passes"])
        conn.execute("UPDATE prodmatch.products SET price = 201 WHERE external_id = 'S2'")
        conn.commit()
        deadline = time.monotonic() + 120
        while not any(p.changed_sources for p in watcher["passes"][seen:]):
            assert watcher.get("error") is None and time.monotonic() < deadline, watcher
            time.sleep(0.1)
        repriced = next(p for p in watcher["passes"][seen:] if p.changed_sources)
        assert repriced.rewritten_sources >= 1 and not repriced.accepted_changed and repriced.clusters is None
        assert conn.execute("SELECT count(*) FROM prodmatch.cluster_builds").fetchone()[0] == builds
        conn.commit()
        assert offers_of(conn, "rival:R1").cluster_id == kettle.cluster_id
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and watcher.get("error") is None


# --- many offers per product: link accepts every pair over the matcher's threshold ----------------------------

KETTLES = [
    "Acme stainless steel electric kettle",
    "Acme electric kettle stainless steel",
    "Acme kettle electric stainless steel silver",
    "Acme stainless electric kettle steel",
    "Electric kettle Acme stainless steel",
    "Acme steel electric kettle stainless",
]
OTHERS = ["Bosch cordless drill", "Sony turntable black", "Philips desk lamp", "Lego city fire station"]


def _lexical_matcher(conn, name: str, depth: int) -> None:
    """A stored logistic matcher on the lexical similarity alone: a match from about 0.35 on."""
    from prodmatch.match.scoring import FORMAT, VERSION
    from prodmatch.store.matchers import save_matcher

    definition = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "kind": "logistic",
        "feature_names": ["sim:lexical"],
        "model": {
            "coefficients": [30.0],
            "intercept": -10.5,
            "medians": [0.0],
            "means": [0.0],
            "scales": [1.0],
            "missing_indicators": [],
        },
        "calibration": {"method": "platt", "a": 1.0, "b": 0.0},
        "threshold": 0.5,
        "metrics": {},
    }
    save_matcher(
        conn,
        name,
        None,
        definition,
        features=["sim:lexical"],
        threshold=0.5,
        metrics={},
        trained_on={"k": depth},
    )
    conn.commit()


@pytest.fixture
def marketplace(conn, tmp_path):
    """A shop with one kettle and a marketplace where six sellers offer it, beside other products."""
    (tmp_path / "shop.csv").write_text(
        "id,title,price\nK,Acme stainless steel electric kettle,30\n"
        + "".join(f"O{i},{t},10\n" for i, t in enumerate(OTHERS))
    )
    (tmp_path / "market.csv").write_text(
        "id,title,price\n"
        + "".join(f"K{i},{t},{29 + i}\n" for i, t in enumerate(KETTLES))
        + "".join(f"X{i},{t},11\n" for i, t in enumerate(OTHERS))
    )
    ingest_file(conn, tmp_path / "shop.csv", "shop")
    ingest_file(conn, tmp_path / "market.csv", "market")
    conn.commit()


@pytest.mark.parametrize(("depth", "k"), [(10, 5), (3, 8)], ids=["trained-depth", "k-deeper-than-trained"])
def test_a_source_with_six_true_targets_gets_all_six_accepted(conn, marketplace, depth, k):
    _lexical_matcher(conn, "many", depth)
    result = link(conn, "shop", "market", matcher="many", k=k)
    accepted = conn.execute(
        "SELECT source_external_id, target_external_id FROM prodmatch.matches_v WHERE run_id = %s AND accepted",
        (result.run_id,),
    ).fetchall()
    conn.commit()
    kettle = sorted(t for s, t in accepted if s == "K")
    assert kettle == [f"K{i}" for i in range(6)]  # every offer, though k (stored candidates) may be 5
    assert {(s, t) for s, t in accepted if s != "K"} == {(f"O{i}", f"X{i}") for i in range(len(OTHERS))}
    one = link(conn, "shop", "market", matcher="many", k=k, one_to_one=True)
    assert one.accepted == 1 + len(OTHERS)  # one-to-one: one kettle offer
    build_clusters(conn, [result.run_id])
    offers = offers_of(conn, "shop:K")
    assert len(offers.offers) == 7 and offers.offers[0].is_query and offers.offers[1].price == 29.0


def test_eval_reports_cluster_quality_of_the_matchers_decisions(settings, conn, marketplace, tmp_path):
    _lexical_matcher(conn, "many", 10)
    gold = tmp_path / "gold.csv"
    gold.write_text(
        "".join(f"shop,K,market,K{i}\n" for i in range(6))
        + "".join(f"shop,O{i},market,X{i}\n" for i in range(len(OTHERS)))
    )
    evaluation = evaluate_matcher(conn, gold, "many", "shop", "market")
    decided = {r.mode: r for r in evaluation.rows if r.name == "matcher"}
    assert (decided["clusters"].precision, decided["clusters"].recall) == (
        1.0,
        1.0,
    )  # every pair in its cluster
    every, one = evaluation.clusters["all"], evaluation.clusters["1:1"]
    assert (every.precision, every.recall, every.exact, every.gold_clusters) == (1.0, 1.0, 1.0, 5)
    assert (
        one.precision == 1.0 and one.recall < 1.0 and one.exact == pytest.approx(4 / 5)
    )  # the kettle is split
    shown = CliRunner().invoke(
        main,
        ["--database-url", settings.database_url, "eval", "--gold", str(gold), "--source", "shop"]
        + ["--target", "market", "--matcher", "many"],
    )
    assert shown.exit_code == 0, shown.output
    assert (
        "B-cubed precision 1.000, recall 1.000" in shown.output
        and "100.0% of 5 gold clusters" in shown.output
        and "matcher         clusters" in shown.output
    )


LAMPS = [
    "Lumo LED desk lamp black",
    "Lumo desk lamp LED black",
    "Lumo black LED desk lamp",
    "Desk lamp Lumo LED black",
]


def _kettles_and_lamps(conn, tmp_path) -> None:
    """A shop with a kettle listed twice (the second listing also names a lamp) and a desk lamp listed twice; a
    marketplace with four sellers' offers of each; the stored matcher "many" (lexical similarity alone)."""
    (tmp_path / "shop.csv").write_text(
        "id,title,price\n"
        "K1,Acme stainless steel electric kettle,30\n"
        "K2,Acme steel electric kettle and Lumo LED desk lamp,31\n"
        "L1,Lumo LED desk lamp black,20\n"
        "L2,Lumo desk lamp LED black,21\n"
    )
    (tmp_path / "market.csv").write_text(
        "id,title,price\n"
        + "".join(f"MK{i},{t},{29 + i}\n" for i, t in enumerate(KETTLES[:4]))
        + "".join(f"ML{i},{t},{19 + i}\n" for i, t in enumerate(LAMPS))
    )
    ingest_file(conn, tmp_path / "shop.csv", "shop")
    ingest_file(conn, tmp_path / "market.csv", "market")
    conn.commit()
    _lexical_matcher(conn, "many", 10)


def test_link_clustered_drops_the_lookalike_that_the_clusters_keep_apart(settings, conn, tmp_path):
    # The shop's second kettle listing also names a lamp, so it is accepted with the four lamp offers too: every
    # pair over the threshold takes them, --clustered (what offers_of shows) does not.
    _kettles_and_lamps(conn, tmp_path)
    query = (
        "SELECT source_external_id, target_external_id, match_probability FROM prodmatch.matches_v"
        " WHERE run_id = %s AND accepted"
    )
    every = link(conn, "shop", "market", matcher="many", k=8)
    accepted = {(s, t) for s, t, _ in conn.execute(query, (every.run_id,)).fetchall()}
    conn.commit()
    lookalikes = {("K2", f"ML{i}") for i in range(4)}
    assert lookalikes <= accepted  # every pair over the threshold
    build_clusters(conn, [every.run_id])
    kettle = {o.external_id for o in offers_of(conn, "shop:K1").offers}
    assert kettle == {"K1", "K2", "MK0", "MK1", "MK2", "MK3"}  # K2 sits with the kettles, not the lamps

    clustered = link(conn, "shop", "market", matcher="many", k=8, clustered=True)
    kept = {(s, t) for s, t, _ in conn.execute(query, (clustered.run_id,)).fetchall()}
    conn.commit()
    assert kept == accepted - lookalikes  # exactly the pairs the clusters keep together
    assert clustered.accepted == len(accepted) - 4
    params = conn.execute(
        "SELECT params FROM prodmatch.match_runs WHERE id = %s", (clustered.run_id,)
    ).fetchone()[0]
    conn.commit()
    assert params["clustered"] is True
    with pytest.raises(ConfigError, match="choose one"):
        link(conn, "shop", "market", matcher="many", clustered=True, one_to_one=True)
    with pytest.raises(ConfigError, match="--clustered decides among a matcher's pairs"):
        link(conn, "shop", "market", space="lexical", threshold=0.3, clustered=True)
    shown = CliRunner().invoke(
        main,
        ["--database-url", settings.database_url, "link", "--source", "shop", "--target", "market"]
        + ["--matcher", "many", "--k", "8", "--clustered"],
    )
    assert shown.exit_code == 0, shown.output
    assert f"{len(accepted) - 4} accepted for 4 of 4 products" in shown.output


def test_link_watch_keeps_the_clustered_decision_run_wide(settings, conn, tmp_path):
    # A new marketplace kettle offer joins the kettles' cluster; the watched --clustered run then decides every
    # pair as a fresh --clustered link of the same catalogues does (the lookalike lamp pairs stay out).
    _kettles_and_lamps(conn, tmp_path)
    run = link(conn, "shop", "market", matcher="many", k=8, clustered=True)
    watcher: dict = {}
    stop = threading.Event()

    def follow() -> None:
        try:
            watch_link(
                settings, run.run_id, stop=stop, poll_seconds=0.2, on_pass=lambda p: watcher.update(last=p)
            )
        except BaseException as error:  # reported by _wait_for
            watcher["error"] = error

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    query = (
        "SELECT array_agg(source_external_id || '-' || target_external_id ORDER BY source_external_id,"
        " target_external_id) FROM prodmatch.matches_v WHERE run_id = %s AND accepted"
    )
    try:
        deadline = time.monotonic() + 120
        while "last" not in watcher:
            assert watcher.get("error") is None and time.monotonic() < deadline, watcher
            time.sleep(0.1)
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title, price)"
            " SELECT catalog_id, 'MK9', %s, 33 FROM prodmatch.products WHERE external_id = 'MK0'",
            (KETTLES[4],),
        )
        conn.commit()
        _wait_for(
            conn,
            query.replace("AND accepted", "AND accepted AND target_external_id = 'MK9'"),
            (run.run_id,),
            watcher,
        )
        time.sleep(1.0)  # let the pass finish writing
        (watched,) = conn.execute(query, (run.run_id,)).fetchone()
        conn.commit()
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and watcher.get("error") is None
    fresh = link(conn, "shop", "market", matcher="many", k=8, clustered=True)
    (linked,) = conn.execute(query, (fresh.run_id,)).fetchone()
    conn.commit()
    assert watched == linked  # the watched run decides as a fresh --clustered link does
    assert {"K1-MK9", "K2-MK9"} <= set(linked) and not any(p.startswith("K2-ML") for p in linked)
