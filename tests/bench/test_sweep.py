"""The lr sweep's choice rule, and that every method's default lr is the sweep's choice."""

import json
from pathlib import Path

import pytest
import yaml

from zotune.bench import load_bench_config
from zotune.bench.sweep import choose, sweep_rows
from zotune.methods import METHODS
from zotune.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def _sweep(tmp_path, methods):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "sweep"), "tasks": ["sst2"], "seeds": [0],
                                    "budget": {"forward_passes": 40}, "common": {"eval_steps": 5},
                                    "methods": methods}))
    return load_bench_config(path)


def _finish(config, label, dev_scores, losses):
    """Write the summary and log of a finished run of ``label``: dev scores every 5 steps, one loss per step."""
    run = next(r for r in config.runs() if r.method == label)
    run.output_dir.mkdir(parents=True)
    records = [{"kind": "train", "step": i + 1, "loss": loss} for i, loss in enumerate(losses)]
    records += [{"kind": "dev", "step": 5 * (i + 1), "score": s, "loss": 0.5} for i, s in enumerate(dev_scores)]
    (run.output_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    best = max(range(len(dev_scores)), key=lambda i: dev_scores[i])
    (run.output_dir / "summary.json").write_text(json.dumps({
        "config": run.settings, "steps": len(losses), "forward_passes": 2 * len(losses),
        "best_dev_score": dev_scores[best], "best_step": 5 * (best + 1)}))


def test_the_late_dev_mean_chooses_not_one_lucky_evaluation(tmp_path):
    config = _sweep(tmp_path, {"mezo-steady": {"method": "mezo", "lr": 1e-4},
                               "mezo-lucky": {"method": "mezo", "lr": 1e-3}})
    _finish(config, "mezo-steady", [0.6, 0.7, 0.7, 0.72], [0.7] * 20)
    _finish(config, "mezo-lucky", [0.9, 0.5, 0.6, 0.5], [0.6] * 20)  # best dev 0.9, late mean 0.55
    rows, complete = sweep_rows(config)
    assert complete == {"mezo"}
    assert choose(rows)["mezo"].label == "mezo-steady"


def test_ties_go_to_the_lower_final_training_loss(tmp_path):
    config = _sweep(tmp_path, {"mezo-a": {"method": "mezo", "lr": 1e-4}, "mezo-b": {"method": "mezo", "lr": 3e-4}})
    _finish(config, "mezo-a", [0.7, 0.7], [0.6] * 10)
    _finish(config, "mezo-b", [0.7, 0.7], [0.5] * 10)
    assert choose(sweep_rows(config)[0])["mezo"].label == "mezo-b"


def test_a_method_with_unfinished_runs_is_not_chosen_for(tmp_path):
    config = _sweep(tmp_path, {"mezo-a": {"method": "mezo", "lr": 1e-4}, "mezo-b": {"method": "mezo", "lr": 3e-4},
                               "dizo-a": {"method": "dizo", "lr": 1e-4}})
    _finish(config, "mezo-a", [0.7, 0.7], [0.6] * 10)
    _finish(config, "dizo-a", [0.7, 0.7], [0.6] * 10)
    rows, complete = sweep_rows(config)
    assert complete == {"dizo"} and {r.label for r in rows} == {"mezo-a", "dizo-a"}


@pytest.mark.parametrize("sweep", ["lr-sweep.yaml", "lr-sweep-fzoo.yaml", "lr-sweep-lozo.yaml",
                                   "lr-sweep-zo-muon.yaml"])
def test_each_swept_method_defaults_to_the_sweeps_choice(monkeypatch, sweep):
    """The registered default lr (and LDSD's lr_mu) of every method whose sweep runs have all finished (their logs
    are kept in results/) is the one the sweep chose. The new methods' sweeps run across sessions: until one of
    their methods has finished every run, their defaults are provisional and not checked."""
    monkeypatch.chdir(ROOT)
    rows, complete = sweep_rows(load_bench_config(f"configs/bench/{sweep}"))
    if sweep == "lr-sweep.yaml":
        assert complete, "no method of the sweep has finished: its logs belong in results/lr-sweep/"
    for method, row in choose(rows).items():
        if method not in complete:
            continue
        assert METHODS.get(method).lr == row.config["lr"], method
        assert TrainConfig(method=method).lr == row.config["lr"], method
        for option, value in row.config["method_options"].items():
            if option == "lr_mu":  # swept over the paper's range; the other options are the recipe's own
                assert getattr(METHODS.get(method).config_cls(), option) == value
