"""Start-up and single-SKU latency: what a PIM's save hook waits for, per product.

Times `nacento-sync sku SKU --image PATH` end to end (a process each, as the hook runs it) on a SKU
whose gallery is already in sync, against a floor measured in the same run (bench/latency_floor.py: the
interpreter, the imports the command needs, the start-up look-ups, the HEADs, one transaction), and
`nacento-sync --help` against `python -c pass`. The commands take turns, run by run, so a machine whose
load changes during the part slows them alike. Median and 90th percentile of each.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fresh import drop, fresh_store, write_config
from run import ROOT, console

#: `--help` should answer within this on the bench machine (issue 12).
HELP_TARGET_S = 0.3


def cli() -> list[str]:
    """The console script users run, else `python -m nacento_sync`."""
    script = Path(sys.executable).parent / "nacento-sync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nacento_sync"]


def _time(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"median_s": round(statistics.median(ordered), 4), "p90_s": round(p90, 4), "runs": len(ordered)}


def run_latency(database: str, feed: Path, bucket: str, out: Path, runs: int = 20) -> dict[str, Any]:
    """`sku` vs its floor and `--help` vs `python -c pass`, `runs` times each, taking turns."""
    first = json.loads(feed.open().readline())
    sku, path = first["sku"], first["images"][0]["file_path"]
    db = f"{database}_latency"
    fresh_store(db, [sku])
    config = write_config(out / "latency.yaml", db, bucket)
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "nacento-sync --help": [*cli(), "--help"],
        "floor (latency_floor.py)": [sys.executable, str(ROOT / "bench" / "latency_floor.py"), str(config), sku,
                                     path],
        "nacento-sync sku": [*cli(), "--config", str(config), "sku", sku, "--image", path],
    }
    try:
        console.print(f"latency: {runs} runs of {len(commands)} commands …")
        _time(commands["nacento-sync sku"])  # the first run writes the image; the timed ones find it in sync
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                samples[name].append(_time(cmd))
    finally:
        drop(db)
    result = {name: _stats(s) for name, s in samples.items()}
    floor, pass_ = result["floor (latency_floor.py)"], result["python -c pass"]
    return {"sku": sku, "image": path, "commands": result,
            "sku_vs_floor": round(result["nacento-sync sku"]["median_s"] / floor["median_s"], 2),
            "help_vs_python": round(result["nacento-sync --help"]["median_s"] / pass_["median_s"], 2),
            "help_target_s": HELP_TARGET_S}


def print_latency(out: Any, lat: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"latency: {lat['commands']['nacento-sync sku']['runs']} runs each, taking turns (SKU in sync, "
                    "one image)", title_justify="left")
    for col in ("command", "median s", "p90 s"):
        t.add_column(col, justify="right")
    for name, s in lat["commands"].items():
        t.add_row(name, f"{s['median_s']:.3f}", f"{s['p90_s']:.3f}")
    out.print(t)
    out.print(f"nacento-sync sku: {lat['sku_vs_floor']} x its floor (target ≤ 2); --help: "
              f"{lat['commands']['nacento-sync --help']['median_s']:.3f} s = {lat['help_vs_python']} x python -c pass "
              f"(target < {lat['help_target_s']} s)")
