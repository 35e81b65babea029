"""The embedded store's maintenance step, run apart from the agent process:

    python -m agents.stores.embedded_maintain PATH [--min-files N] [--retention-days D]
    fleetwise store compact PATH ...                     (the same, from the CLI)

It folds the agent's pending row files into Parquet, merges day partitions of at least N files,
deletes days past retention, and rolls up the day partitions that changed (agents.stores.embedded_rollup),
all under the store's writer lock. The agent starts it as a child
every [store] compact_interval_seconds; a systemd timer or cron job can run it as well. When another
writer holds the lock (an ingest, a previous pass), it says so and exits 3: the next pass catches up.
Exit 2: bad arguments or a path that is not a directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("fleetwise.store")

EXIT_BUSY = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the embedded store's directory (the PATH of embedded:PATH)")
    parser.add_argument("--min-files", type=int, default=16, metavar="N",
                        help="merge a day partition once it has N files (default 16)")
    parser.add_argument("--retention-days", type=float, metavar="DAYS",
                        help="delete days that ended more than DAYS ago (default: keep everything)")
    parser.add_argument("--nice", action="store_true", help="run at a lower CPU priority (used by the agent)")


def run(args: argparse.Namespace) -> int:
    from agents.stores.embedded import EmbeddedWriter
    from agents.stores.embedded_files import StoreBusy

    path = Path(args.path).expanduser()
    if args.min_files < 2 or (args.retention_days is not None and not 0 < args.retention_days < float("inf")):
        print("fleetwise: store compact: --min-files must be at least 2 and --retention-days a positive number",
              file=sys.stderr)
        return 2
    if not path.is_dir():
        print(f"fleetwise: store compact: {path}: not a directory", file=sys.stderr)
        return 2
    if importlib.util.find_spec("pyarrow") is None:
        print("fleetwise: store compact: writing Parquet needs pyarrow: pip install 'fleetwise[store]'",
              file=sys.stderr)
        return 2
    if args.nice:
        os.nice(10)
    writer = EmbeddedWriter(path)
    try:
        with writer.lock(wait=False):
            pass  # say "busy" at once rather than queue behind a long ingest
        folded, compacted, removed, rolled = writer.maintain(args.min_files, args.retention_days)
    except StoreBusy as e:
        print(f"fleetwise: store compact: {e}; try again later", file=sys.stderr)
        return EXIT_BUSY
    except OSError as e:  # disk full, permissions: the next pass tries again
        print(f"fleetwise: store compact: {path}: {e}", file=sys.stderr)
        return 1
    print(f"{path}: {folded} pending batches folded, {compacted} partitions compacted, {len(removed)} days removed, "
          f"{rolled} partitions rolled up")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.stores.embedded_maintain",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
