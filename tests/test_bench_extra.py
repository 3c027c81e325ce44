"""Keeps the bench's extra parts working (bench/extra.py): async, latency and store views at a tiny size.

Like tests/test_bench.py: against the real servers, asserting that each part ran to the end and printed its
ratios, never a time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from extra import PARTS, parts  # noqa: E402
from test_bench import run_bench  # noqa: E402


def test_only_names_parts_and_rejects_unknown_ones():
    assert parts("async, latency") == ("async", "latency")
    assert set(PARTS) == {"sync", "async", "latency", "storeviews"}
    with pytest.raises(argparse.ArgumentTypeError, match="fast"):
        parts("async,fast")


def test_extra_parts_run_at_a_tiny_size(tmp_path, db_params):
    res = run_bench("run.py", "bx", db_params, "--skus", "30", "--images", "2", "--out", str(tmp_path),
                    "--only", "async,latency,storeviews", "--latency-runs", "2", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "results.json").read_text())
    assert s["scenarios"] == []  # --only left the sync scenarios out

    a = s["async"]
    assert [v["workers"] for v in a["variants"]] == [1, 2]
    assert all(v["skus"] == 30 and v["vs_sync"] > 0 for v in a["variants"])
    one = a["variants"][0]["per_worker"][0]
    assert one["batches"] >= 1 and one["stages"]["engine transaction"] > 0
    assert sum(one["s3_requests"].values()) > 0  # the probe saw the worker's own storage client
    assert a["broker_floor"]["messages"] == 30
    assert "× sync" in res.stdout and "engine transaction" in res.stdout

    lat = s["latency"]
    assert set(lat["commands"]) == {"python -c pass", "nacento-sync --help", "floor (latency_floor.py)",
                                    "nacento-sync sku"}
    assert lat["sku_vs_floor"] > 0 and lat["help_vs_python"] > 0
    assert "x its floor" in res.stdout

    sv = s["storeviews"]
    by = {r["run"]: r for r in sv["runs"]}
    assert by["plain cold"]["store_value_rows"] == 0
    assert by["views cold"]["store_value_rows"] > 0  # the store-view values were written …
    assert by["views no-change"]["sql_write_statements"] == 0  # … and a re-run finds nothing to do
    assert by["views 5 % labels"]["stats"]["updated_value"] + by["views 5 % labels"]["sql_write_statements"] > 0
    assert sv["cold_write_statements_per_batch_vs_plain"] > 0
    assert "write statements per batch" in res.stdout
