"""`python -m bench` lists every benchmark (bench/__main__.py's BENCHMARKS)."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import BENCHMARKS, usage

HELPERS = {"__init__", "__main__", "common", "interrupt", "profile"}  # shared code, py-spy


def test_every_benchmark_module_is_registered(repo_root: Path) -> None:
    bench = repo_root / "bench"
    modules = {p.stem for p in bench.glob("*.py")} | {
        p.name for p in bench.iterdir() if (p / "__main__.py").exists()
    }
    assert modules - HELPERS == set(BENCHMARKS)
    assert "chart_memory" in usage()
