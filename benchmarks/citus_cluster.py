"""A local Citus cluster for trying prodmatch on it: build (once), start, print the URL, stop on Ctrl-C.

    python benchmarks/citus_cluster.py [--workers 2] [--shards 8] [--database prodmatch]

Builds Citus from ../shared/vendor/citus-14.0.1.tar.gz into a cached copy of the embedded server's PostgreSQL
(prodmatch.store.citus_local), starts a coordinator and the workers on 127.0.0.1, creates the database on every
node with citus and vector in it, and prints the coordinator's URL: then, in another shell,
`PRODMATCH_DATABASE_URL=<url> prodmatch db upgrade` distributes the schema.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodmatch.store import citus_local  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8, help="citus.shard_count of each distributed table")
    parser.add_argument("--database", default="prodmatch")
    args = parser.parse_args()
    # a TERM (a timeout, a kill) unwinds like Ctrl-C, so the cluster's servers are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = citus_local.missing_reason()
    if reason:
        sys.exit(reason)
    cluster = citus_local.LocalCluster.start(args.workers, shard_count=args.shards)
    try:
        print(cluster.create_database(args.database), flush=True)
        for node in cluster.nodes:
            print(f"  {node.name}: 127.0.0.1:{node.port}  {node.data}", file=sys.stderr)
        print("Ctrl-C stops the cluster and removes its folders", file=sys.stderr)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
