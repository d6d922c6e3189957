"""The built-in and learned matchers, clusters, labels and the analyst role on the Citus cluster give what one node
gives on the same catalogues: `link` (default: the built-in matcher), `matcher train` + `link --matcher` +
`eval --matcher`, `dedupe` (built-in), `clusters build` + `prodmatch.offers_of`, `labels import` and
`db grant-reader`."""

from __future__ import annotations

import json

import psycopg
import pytest
from builders import shoes_sharing_model_codes
from click.testing import CliRunner
from psycopg import sql

from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.demo.catalogues import generate
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.ingest.load import ingest_file
from prodmatch.match.hybrid import read_brand_aliases
from prodmatch.match.link import link


def _cli(settings, *args) -> dict:
    runner = CliRunner()
    result = runner.invoke(
        main, ["--database-url", settings.database_url, "--home", str(settings.home), *args, "--json"]
    )
    assert result.exit_code == 0, (
        args,
        result.output,
        "".join(__import__("traceback").format_exception(*result.exc_info))[-3000:],
    )
    return json.loads(result.stdout)


def _pairs(conn, run_id) -> list:
    return conn.execute(
        "SELECT source_external_id, target_external_id, rank, round(match_probability::numeric, 4), accepted"
        " FROM prodmatch.matches_v WHERE run_id = %s ORDER BY 1, 3",
        (run_id,),
    ).fetchall()


def _answers(settings, files) -> dict:
    out = {}
    out["ingest"] = [
        _cli(settings, "ingest", str(files.shop), "--catalog", "shop")["inserted"],
        _cli(settings, "ingest", str(files.competitor), "--catalog", "competitor")["inserted"],
    ]
    builtin = _cli(settings, "link", "--source", "shop", "--target", "competitor")
    out["labels"] = _cli(settings, "labels", "import", str(files.gold))["imported"]
    trained = _cli(settings, "matcher", "train", "--labels", "--source", "shop", "--target", "competitor")
    out["trained"] = (trained["name"], trained["gold_pairs"])
    learned = _cli(
        settings, "link", "--source", "shop", "--target", "competitor", "--matcher", trained["name"]
    )
    evaluated = _cli(
        settings,
        "eval",
        "--labels",
        "--source",
        "shop",
        "--target",
        "competitor",
        "--matcher",
        trained["name"],
    )
    out["eval"] = [(r["name"], round(r["f1"], 4)) for r in evaluated["rows"]]
    deduped = _cli(settings, "dedupe", "--catalog", "competitor")
    out["dedupe"] = (deduped["clusters"], deduped["duplicates"], deduped["largest"])
    built = _cli(settings, "clusters", "build", "--run", str(builtin["run_id"]))
    out["clusters"] = built["clusters"]
    with db.connection(settings) as conn:
        out["link builtin"] = _pairs(conn, builtin["run_id"])
        out["link matcher"] = _pairs(conn, learned["run_id"])
        out["dedupe rows"] = sorted(
            sorted(r[0])
            for r in conn.execute(
                "SELECT array_agg(p.external_id) FROM prodmatch.duplicate_clusters d"
                " JOIN prodmatch.products p ON p.id = d.product_id WHERE d.run_id = %s GROUP BY d.cluster_id",
                (deduped["run_id"],),
            )
        )
        out["offers_of"] = sorted(
            conn.execute(
                "SELECT p.external_id, o.offer_catalog, o.offer_external_id, o.is_query FROM prodmatch.products p"
                " JOIN prodmatch.catalogs c ON c.id = p.catalog_id,"
                " prodmatch.offers_of(c.name, p.external_id) o WHERE c.name = 'shop'"
            ).fetchall()
        )
        out["labels_v"] = conn.execute("SELECT count(*) FROM prodmatch.labels_v").fetchone()[0]
        conn.execute("DROP ROLE IF EXISTS citus_analyst")
        conn.execute("CREATE ROLE citus_analyst LOGIN")
        conn.commit()
    runner = CliRunner()
    granted = runner.invoke(
        main, ["--database-url", settings.database_url, "db", "grant-reader", "citus_analyst"]
    )
    assert granted.exit_code == 0, granted.output
    reader_url = psycopg.conninfo.make_conninfo(settings.database_url, user="citus_analyst")
    with psycopg.connect(reader_url, autocommit=True) as reader:
        out["reader matches_v"] = reader.execute("SELECT count(*) FROM prodmatch.matches_v").fetchone()[0]
        for statement in ("UPDATE prodmatch.products SET title = 'x'", "DELETE FROM prodmatch.matches"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(statement)
    with db.connection(settings) as conn:
        # the owner by name: `TO CURRENT_USER` closed the Citus 14 coordinator's connection here
        conn.execute(sql.SQL("REASSIGN OWNED BY citus_analyst TO {}").format(sql.Identifier(conn.info.user)))
        conn.execute("DROP OWNED BY citus_analyst")
        conn.execute("DROP ROLE citus_analyst")
    return out


def test_matchers_clusters_labels_and_the_reader_role_give_the_same_answers(
    citus_settings, settings, tmp_path
):
    files = generate(tmp_path / "demo", 40, seed=3, image_size=32)
    db.upgrade(citus_settings)
    single = _answers(settings, files)
    cluster = _answers(citus_settings, files)
    assert single["link builtin"] and any(row[-1] for row in single["link builtin"])  # something was accepted
    assert single["labels"] > 10 and single["clusters"] > 0
    assert cluster.keys() == single.keys()
    for key in single:
        assert (key, cluster[key]) == (key, single[key])


def _aliases_and_link(settings, shop, market) -> tuple[dict, list]:
    with db.connection(settings) as conn:
        ingest_file(conn, shop, "chinese-shop")
        ingest_file(conn, market, "market")
        refresh_lexical(conn)
        conn.commit()
        ids = {r[0] for r in conn.execute("SELECT id FROM prodmatch.catalogs").fetchall()}
        aliases = {
            k: v for k, v in read_brand_aliases(conn, ids).items() if k in ("双星", "doublestar", "回力")
        }
        run = link(conn, "chinese-shop", "market")
        return aliases, _pairs(conn, run.run_id)


def test_brand_aliases_learned_from_shared_codes_are_the_same_on_the_cluster(
    citus_settings, settings, tmp_path
):
    # one aggregate over the codes of products sharded by id: the cluster learns what one node learns
    shop, market = shoes_sharing_model_codes(tmp_path)
    db.upgrade(citus_settings)
    single = _aliases_and_link(settings, shop, market)
    cluster = _aliases_and_link(citus_settings, shop, market)
    assert single[0] == {"双星": ("doublestar",), "doublestar": ("双星",), "回力": ("warrior",)}
    assert cluster == single
