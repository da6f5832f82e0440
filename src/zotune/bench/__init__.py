"""``zotune bench``: a grid of methods × tasks × seeds from one YAML file, with a CSV, a table and plots."""

from zotune.bench.grid import BenchConfig, RunSpec, load_bench_config
from zotune.bench.report import collect, write_report
from zotune.bench.runner import RunOutcome, run_grid

__all__ = ["BenchConfig", "RunSpec", "RunOutcome", "load_bench_config", "run_grid", "collect", "write_report"]
