"""One benchmark scenario in a process of its own (so its peak RSS is its own): a sync through the library API.

    python bench/scenario.py CONFIG EXPORT REPORT [--mode replace]

Syncs EXPORT with `nacento_sync.sync`, exactly as `nacento-sync --config CONFIG sync EXPORT --report REPORT`
does, and prints the run's status and figures as one JSON line. Exit code 0 when the run completed (SKUs
may have failed: status `ok` or `failed`), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nacento_sync import Feed, Options, load_config, sync


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("export", type=Path)
    p.add_argument("report", type=Path)
    p.add_argument("--mode", choices=("merge", "replace"))
    args = p.parse_args()
    config = load_config(args.config)
    options = Options.from_config(config, **({"mode": args.mode} if args.mode else {}))
    result = sync(config, Feed([str(args.export)]), options, report_file=args.report)
    print(json.dumps({"status": result.status, "seconds": result.seconds, "batches": result.batches,
                      "s3_requests": result.s3_requests, "sql_write_statements": result.sql_write_statements,
                      "report_error": result.report_error, "stage_seconds": result.stage_seconds}))
    return 0 if result.status in ("ok", "failed") else 1


if __name__ == "__main__":
    sys.exit(main())
