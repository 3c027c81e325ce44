"""The parts of the bench beyond the five sync scenarios, and `--only`'s vocabulary.

    async       `submit` + 1 and 2 workers vs `sync` of the same export, against a broker floor (asyncbench.py)
    latency     `nacento-sync sku` and `--help` end to end, against a floor process (latency.py)
    storeviews  SQL statements per batch with 10 % of products on two store views vs none (storeviews.py)

Each module is imported only when its part runs (they import bench/run.py's helpers).
"""

from __future__ import annotations

import argparse
from typing import Any

#: What `--only` accepts; `sync` is run.py's five scenarios with their references.
PARTS = ("sync", "async", "latency", "storeviews")


def parts(value: str) -> tuple[str, ...]:
    """`--only async,latency` → ("async", "latency"); an unknown name is a usage error."""
    chosen = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(unknown) or '(none)'}; choose from "
                                         f"{', '.join(PARTS)}")
    return chosen


def extra_parts(args: argparse.Namespace, g: dict[str, Any]) -> dict[str, Any]:
    """Run the chosen extra parts on the generated catalog; their results, keyed by part."""
    results: dict[str, Any] = {}
    if "async" in args.only:
        from asyncbench import run_async

        results["async"] = run_async(args.database, g["feeds"]["f0"], g["bucket"], args.out)
    if "latency" in args.only:
        from latency import run_latency

        results["latency"] = run_latency(args.database, g["feeds"]["f0"], g["bucket"], args.out, args.latency_runs)
    if "storeviews" in args.only:
        from storeviews import run_storeviews

        results["storeviews"] = run_storeviews(args.database, g["feeds"]["f0"], g["bucket"], args.out)
    return results


def print_extra(out: Any, summary: dict[str, Any]) -> None:
    if "async" in summary:
        from asyncbench import print_async

        print_async(out, summary["async"])
    if "latency" in summary:
        from latency import print_latency

        print_latency(out, summary["latency"])
    if "storeviews" in summary:
        from storeviews import print_storeviews

        print_storeviews(out, summary["storeviews"])
