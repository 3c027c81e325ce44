"""Keeps the benchmark working: bench/run.py at a tiny size, against the same real servers (not timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pymysql

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, tag: str, db_params: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`bench/SCRIPT ARGS --database <its own>`, then every database it made (`<its own>*`) dropped: concurrent
    runs never share one."""
    database = f"nst_{tag}_{uuid.uuid4().hex[:12]}"
    try:
        return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--database", database],
                              capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    finally:
        conn = pymysql.connect(**db_params, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SHOW DATABASES LIKE '{database}%'")
                for (name,) in cur.fetchall():
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


def test_bench_runs_at_a_tiny_size(tmp_path, db_params):
    res = run_bench("run.py", "bench", db_params, "--skus", "60", "--images", "3", "--baseline-skus", "5",
                    "--rss-lines", "300", "--out", str(tmp_path), "--only", "sync")
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "results.json").read_text())
    by = {r["scenario"]: r for r in s["scenarios"]}
    assert list(by) == ["cold", "nochange", "reupload", "labels", "replace"]
    assert by["cold"]["stats"]["inserted"] > 0
    assert by["nochange"]["stats"]["inserted"] == 0 and by["nochange"]["stats"]["updated_value"] == 0
    assert by["nochange"]["stats"]["skipped_no_change"] == by["cold"]["images"] - s["size"]["missing"]
    assert by["reupload"]["stats"]["updated_meta"] > 0
    assert by["labels"]["stats"]["updated_value"] > 0
    assert by["replace"]["stats"]["deleted"] > 0
    assert all(r["peak_rss_mb"] > 0 and r["speedup_vs_baseline"] for r in s["scenarios"])
    # Where the CPU went: the run's own process, and the servers' (scripts/services' pid files) when known.
    assert all(r["cpu_seconds"]["sync"] > 0 and r["list_pass"]["seconds"] > 0 for r in s["scenarios"])
    assert s["rss_1m"]["not_found"] == 300
    assert "no-change re-sync" in res.stdout


def test_filesystem_bench_runs_at_a_tiny_size(tmp_path, db_params):
    res = run_bench("filesystem.py", "fsbench", db_params, "--skus", "40", "--images", "3", "--file-kib", "1",
                    "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "filesystem.json").read_text())
    by = {r["scenario"]: r for r in s["scenarios"]}
    assert list(by) == ["cold", "nochange"]
    found = s["size"]["images"] - s["size"]["missing"]
    assert by["cold"]["stats"]["inserted"] == found and by["cold"]["requests"]["READ"] == found
    assert by["nochange"]["stats"]["skipped_no_change"] == found and by["nochange"]["requests"]["READ"] == 0
    assert s["floor"]["seconds"] > 0 and s["nochange_vs_floor"] > 0
    bf = s["batched_floor"]
    assert bf["batched_read_seconds"] > 0 and bf["seconds"] > bf["stat_seconds"] and s["nochange_vs_batched_floor"] > 0
    assert by["nochange"]["cpu_seconds"]["sync"] > 0
    assert "no-change re-sync ÷ floor" in res.stdout
    assert not (tmp_path / "fs-media").exists()  # the image tree is removed after the run
