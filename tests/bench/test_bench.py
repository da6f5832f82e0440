import csv
import json
import os

import pytest
import yaml

from hostile import expect_one_line_error
from zotune.bench import load_bench_config, run_grid, write_report
from zotune.cli import main
from zotune.errors import ConfigError


@pytest.fixture()
def two_task_data_dir(tiny_data_dir):
    """rotten_tomatoes plus the same rows as sst2 (its field is `sentence`)."""
    target = tiny_data_dir / "sst2"
    target.mkdir()
    for split in ("train", "validation"):
        rows = [json.loads(line) for line in (tiny_data_dir / "rotten_tomatoes" / f"{split}.jsonl").open()]
        (target / f"{split}.jsonl").write_text("".join(json.dumps({"sentence": r["text"], "label": r["label"]}) + "\n"
                                                      for r in rows))
    return tiny_data_dir


def _grid(tmp_path, model_dir, data_dir, **overrides):
    values = {
        "output_dir": str(tmp_path / "bench"),
        "tasks": ["rotten_tomatoes", "sst2"],
        "seeds": [0, 1],
        "budget": {"forward_passes": 8},
        "common": {"model": str(model_dir), "data_dir": str(data_dir), "lr": 2e-3, "eps": 1e-2, "batch_size": 8,
                   "num_train": 32, "num_dev": 8, "num_eval": 16, "eval_steps": 2, "eval_batch_size": 16},
        "methods": {"mezo": {}, "mezo-rademacher": {"method": "mezo", "noise": "rademacher"}},
    }
    values.update(overrides)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_grid_writes_csv_table_and_plots_and_a_rerun_skips_finished_runs(tiny_model_dir, two_task_data_dir,
                                                                          tmp_path):
    config = load_bench_config(_grid(tmp_path, tiny_model_dir, two_task_data_dir))
    outcomes = run_grid(config, progress=False)
    assert [o.status for o in outcomes] == ["done"] * 8
    files = write_report(config)
    for path in files.values():
        assert path.is_file() and path.stat().st_size > 0, path
    rows = list(csv.DictReader(files["csv"].open()))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"finished"}
    assert {(r["method"], r["task"], r["seed"]) for r in rows} == {
        (m, t, s) for m in ("mezo", "mezo-rademacher") for t in ("rotten_tomatoes", "sst2") for s in ("0", "1")}
    assert all(r["forward_passes"] == "8" and r["steps"] == "4" for r in rows)  # the pass budget ended each run
    assert all(0.0 <= float(r["score"]) <= 1.0 and float(r["final_train_loss"]) > 0 for r in rows)
    assert all(r["cpus"] == str(os.cpu_count()) and r["loaded"] in ("True", "False") for r in rows)
    assert all(r["cpu_model"] for r in rows)  # the kind of machine each run was timed on
    table = files["table"].read_text()
    assert "| method | rotten_tomatoes (accuracy) | sst2 (accuracy) |" in table
    assert "| zero-shot |" in table and "| mezo-rademacher |" in table and " ± " in table
    # mezo is the time-to-loss yardstick: it reaches its own final loss on every task and seed
    time_to_loss = table.split("## Time to mezo's final training loss")[1].split("## Cost")[0]
    mezo_row = next(line for line in time_to_loss.splitlines() if line.startswith("| mezo |"))
    assert mezo_row.count(" passes, ") == 2 and "(" not in mezo_row, mezo_row
    assert files["dev_vs_seconds"].is_file()  # dev records carry their cost, so the dev curve is drawn
    assert files["heldout_vs_seconds"].read_bytes().startswith(b"\x89PNG")  # the held-out metric per second
    # Each method against mezo, run for run: 2 tasks, 4 (task, seed) pairs, the difference in points as computed.
    versus = table.split("## Against mezo, run for run")[1].split("## Cost")[0]
    row = next(line for line in versus.splitlines() if line.startswith("| mezo-rademacher |")).split(" | ")
    by_run = {(r["method"], r["task"], r["seed"]): float(r["score"]) for r in rows}
    diffs = [100 * (by_run[("mezo-rademacher", t, s)] - by_run[("mezo", t, s)])
             for t in ("rotten_tomatoes", "sst2") for s in ("0", "1")]
    assert row[1].startswith(f"{sum(diffs) / 4:+.1f}") and row[2].endswith("of 2") and row[3].endswith("of 4")
    assert "| mezo |" not in versus
    assert "(reached in " in row[-1] and row[-1].endswith("of 4) |")  # the forward-pass speed-up, over 4 pairs
    by_task = table.split("## Against mezo, task by task")[1].split("## Cost")[0]
    assert "| mezo-rademacher |" in by_task and "W/L" in by_task  # per task: a paired interval over the 2 seeds
    # The two direction kinds really ran differently.
    summaries = [json.loads((tmp_path / "bench" / "runs" / m / "sst2" / "seed0" / "summary.json").read_text())
                 for m in ("mezo", "mezo-rademacher")]
    assert summaries[0]["config"]["noise"] == "gaussian16" and summaries[1]["config"]["noise"] == "rademacher"

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "bench" / "runs").rglob("summary.json")}
    assert [o.status for o in run_grid(config, progress=False)] == ["skipped"] * 8
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_interrupted_run_resumes_and_changed_settings_are_refused(tiny_model_dir, tiny_data_dir, tmp_path):
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                 methods={"mezo": {}}, budget={"steps": 4})
    config = load_bench_config(grid)
    run_grid(config, progress=False)
    (run,) = config.runs()
    summary = json.loads((run.output_dir / "summary.json").read_text())
    # Cut the run short: as if killed after its step-2 checkpoint (the summary is written last).
    (run.output_dir / "summary.json").unlink()
    from zotune.train.config import TrainConfig
    from zotune.train.loop import train

    train(TrainConfig.from_dict({**run.settings, "steps": 2, "overwrite": True}), progress=False)
    (run.output_dir / "summary.json").unlink()
    events = []
    assert [o.status for o in run_grid(config, progress=False, on_event=lambda e, *_: events.append(e))] == ["resumed"]
    assert events == ["resume"]  # not "start": the CLI keeps a resumed run's part-time out of its estimate
    resumed = json.loads((run.output_dir / "summary.json").read_text())
    assert resumed["steps"] == 4 and resumed["final"] == summary["final"]

    changed = load_bench_config(_grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                                      methods={"mezo": {"lr": 1e-3}}, budget={"steps": 4}))
    with pytest.raises(ConfigError, match="differs in lr.*--force"):
        run_grid(changed, progress=False)
    assert [o.status for o in run_grid(changed, progress=False, force=True)] == ["done"]


def test_a_run_finished_before_the_counter_gaussian_counts_as_torch_gaussian(tiny_model_dir, tiny_data_dir,
                                                                              tmp_path):
    from zotune.bench.runner import run_state

    def grid(noise):
        return load_bench_config(_grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                                       methods={"mezo": {"noise": noise}}, budget={"steps": 2}))

    run_grid(grid("gaussian"), progress=False)
    (run,) = grid("gaussian").runs()
    path = run.output_dir / "summary.json"
    summary = json.loads(path.read_text())
    assert summary["zotune_version"] and summary["config"]["noise"] == "gaussian"
    del summary["zotune_version"]  # as zotune 0.1.0 wrote it, when `gaussian` was torch's generator
    path.write_text(json.dumps(summary))
    assert run_state(run) == "changed"
    with pytest.raises(ConfigError, match="differs in noise"):
        run_grid(grid("gaussian"), progress=False)
    assert run_state(grid("torch-gaussian").runs()[0]) == "finished"


def test_a_run_finished_under_the_earlier_default_noise_counts_only_where_noise_means_nothing(
        tiny_model_dir, tiny_data_dir, tmp_path):
    # Before zotune 0.3.0 the default noise was `gaussian`: a MeZO run that drew it is another stream than today's
    # default, but for a method with its own directions (LOZO's low-rank z) the recorded name meant nothing.
    from zotune.bench.runner import run_state

    config = load_bench_config(_grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                                     budget={"steps": 1}, methods={"mezo": {}, "lozo": {}}))
    run_grid(config, progress=False)
    for run in config.runs():
        path = run.output_dir / "summary.json"
        summary = json.loads(path.read_text())
        assert summary["config"]["noise"] == "gaussian16"
        summary["config"]["noise"] = "gaussian"
        path.write_text(json.dumps(summary))
    assert {run.method: run_state(run) for run in config.runs()} == {"mezo": "changed", "lozo": "finished"}


def test_keep_weights_false_removes_a_finished_runs_weights_and_keeps_its_results(tiny_model_dir, tiny_data_dir,
                                                                                   tmp_path):
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                 methods={"mezo": {}}, budget={"steps": 4}, keep_weights=False)
    config = load_bench_config(grid)
    (run,) = config.runs()
    stray = run.output_dir / "notes.txt"  # not the run's: it stays
    stray.parent.mkdir(parents=True)
    stray.write_text("mine")
    assert [o.status for o in run_grid(config, progress=False)] == ["done"]
    assert not (run.output_dir / "checkpoint").exists() and not (run.output_dir / "best").exists()
    assert stray.read_text() == "mine"
    assert json.loads((run.output_dir / "summary.json").read_text())["steps"] == 4
    assert [o.status for o in run_grid(config, progress=False)] == ["skipped"]
    assert list(csv.DictReader(write_report(config)["csv"].open()))[0]["status"] == "finished"
    with pytest.raises(ConfigError, match="keep_weights must be true or false"):
        load_bench_config(_grid(tmp_path, tiny_model_dir, tiny_data_dir, keep_weights="no"))


def test_cli_bench_in_separate_processes_reports_and_skips(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[3],
                 methods=["mezo", "adalezo"], budget={"steps": 2}, isolate=True)
    assert main(["bench", str(grid), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[1/2] mezo on rotten_tomatoes, seed 3" in out and "runs: 2 done" in out
    assert "the 1 left, if alike: about " in out  # the second run's start line estimates what remains
    assert "| adalezo |" in out
    assert (tmp_path / "bench" / "runs" / "adalezo" / "rotten_tomatoes" / "seed3" / "bench-run.yaml").is_file()
    assert main(["bench", str(grid), "--no-progress"]) == 0
    assert "runs: 2 skipped" in capsys.readouterr().out


def test_a_failed_run_is_reported_and_the_grid_goes_on(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    # The second task has no data: its run fails, the first still finishes, and the exit code says so.
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rte", "rotten_tomatoes"], seeds=[0],
                 methods=["mezo"], budget={"steps": 2})
    assert main(["bench", str(grid), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "runs: 1 done, 1 failed" in captured.out
    assert "mezo on rte, seed 0 failed" in captured.err
    rows = list(csv.DictReader((tmp_path / "bench" / "results.csv").open()))
    assert [r["status"] for r in rows] == ["missing", "finished"]


def test_zero_shot_row_comes_from_any_finished_method(tiny_model_dir, tiny_data_dir, tmp_path):
    # Zero-shot scores the untrained model: it must not vanish when the grid's first method has not finished.
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0], budget={"steps": 2})
    config = load_bench_config(grid)
    run_grid(config, progress=False)
    table = write_report(config)["table"].read_text()
    zero_shot_line = next(line for line in table.splitlines() if line.startswith("| zero-shot |"))
    (tmp_path / "bench" / "runs" / "mezo" / "rotten_tomatoes" / "seed0" / "summary.json").unlink()
    write_report(config)
    table = (tmp_path / "bench" / "results.md").read_text()
    assert "| — |" not in zero_shot_line
    assert zero_shot_line in table.splitlines()
    assert "| mezo | 0 |" not in table and "| mezo-rademacher | 1 | 2 |" in table  # cost rows count their runs


def test_every_method_tied_at_the_best_score_is_bold(tiny_model_dir, tiny_data_dir, tmp_path):
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0], budget={"steps": 1})
    config = load_bench_config(grid)
    run_grid(config, progress=False)
    for method in ("mezo", "mezo-rademacher"):
        path = tmp_path / "bench" / "runs" / method / "rotten_tomatoes" / "seed0" / "summary.json"
        summary = json.loads(path.read_text())
        summary["final"]["eval_score"] = 0.75
        path.write_text(json.dumps(summary))
    table = write_report(config)["table"].read_text()
    assert "| mezo | **0.750** |" in table and "| mezo-rademacher | **0.750** |" in table
    # A lead of less than one held-out example (16 rows here: 0.0625) is no lead: nothing is bold.
    path = tmp_path / "bench" / "runs" / "mezo" / "rotten_tomatoes" / "seed0" / "summary.json"
    summary = json.loads(path.read_text())
    assert summary["data"]["eval"] == 16
    summary["final"]["eval_score"] = 0.80
    path.write_text(json.dumps(summary))
    held_out = write_report(config)["table"].read_text().split("## Final training loss")[0]
    assert "| mezo | 0.800 |" in held_out and "**" not in held_out.split("|---")[1]
    summary["final"]["eval_score"] = 0.8125  # exactly one example ahead
    path.write_text(json.dumps(summary))
    assert "| mezo | **0.812** |" in write_report(config)["table"].read_text()


@pytest.mark.parametrize("change,message", [
    ({"budget": {"steps": 2, "seconds": 5}}, "exactly one of"),
    ({"budget": {"epochs": 2}}, "exactly one of"),
    ({"seeds": [0, 0]}, "distinct"),
    ({"methods": {"mezo": {"seed": 3}}}, "which the grid sets itself"),
    ({"methods": {"nope": {}}}, "nope"),
    ({"methods": {"mezo": {"lr": -1}}}, "run mezo/rotten_tomatoes/seed0: Invalid lr"),
    ({"tasks": ["not-a-task"]}, "not-a-task"),
    ({"colour": "blue"}, "unknown key"),
    ({"methods": {"a/b": {}}}, "invalid name"),
    ({"references": ["mezo-sign"]}, "references names ['mezo-sign'], which are not among the grid's methods"),
    ({"references": "mezo"}, "references must be a list"),
    ({"references": ["mezo", "mezo"]}, "references must be a list of distinct"),
])
def test_bad_grid_files_fail_before_anything_runs(change, message, tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, **{"tasks": ["rotten_tomatoes"], "seeds": [0], **change})
    assert main(["bench", str(grid)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()


def test_each_reference_gets_its_own_paired_sections(tiny_model_dir, tiny_data_dir, tmp_path):
    # An ablation is paired with its method (here mezo-rademacher is the yardstick) as well as with MeZO.
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0, 1],
                 budget={"steps": 2}, references=["mezo-rademacher", "mezo"])
    config = load_bench_config(grid)
    run_grid(config, progress=False)
    table = write_report(config)["table"].read_text()
    rows = {(r["method"], r["seed"]): float(r["score"]) for r in csv.DictReader((tmp_path / "bench" / "results.csv").open())}
    against_rademacher = table.split("## Against mezo-rademacher, run for run")[1].split("## ")[0]
    mezo_row = next(line for line in against_rademacher.splitlines() if line.startswith("| mezo |")).split(" | ")
    diff = sum(100 * (rows[("mezo", s)] - rows[("mezo-rademacher", s)]) for s in ("0", "1")) / 2
    assert mezo_row[1].startswith(f"{diff:+.1f}")
    assert "| mezo-rademacher |" not in against_rademacher
    assert table.index("## Time to mezo-rademacher's final") < table.index("## Time to mezo's final")
    against_mezo = table.split("## Against mezo, run for run")[1].split("## ")[0]
    assert "| mezo-rademacher |" in against_mezo and "| mezo |" not in against_mezo


def test_missing_grid_file_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "absent.yaml")]) == 2
    assert "Cannot read config file" in capsys.readouterr().err


@pytest.mark.parametrize("damage,pattern", [
    ("summary", "Corrupt"), ("summary_fields", "steps missing or of the wrong type"),
    ("metrics", "metrics.jsonl:1: corrupt line"),
])
def test_report_only_on_damaged_run_files_is_one_line_error(damage, pattern, tiny_model_dir, tiny_data_dir, tmp_path,
                                                           capsys):
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                 methods={"mezo": {}}, budget={"steps": 2})
    assert main(["bench", str(grid), "--no-progress"]) == 0
    (run,) = load_bench_config(grid).runs()
    summary = run.output_dir / "summary.json"
    if damage == "summary":
        summary.write_text(summary.read_text()[:40])
    elif damage == "summary_fields":
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "steps": "2"}))
    else:
        (run.output_dir / "metrics.jsonl").write_text('{"kind": "zero_shot"\n{"kind": "train"}\n')
    capsys.readouterr()
    assert main(["bench", str(grid), "--report-only", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zotune: error: ") and pattern in err[0], err


def test_a_summary_that_is_not_a_json_object_means_the_run_is_done_again(tiny_model_dir, tiny_data_dir, tmp_path):
    """A summary.json holding a JSON array was an internal TypeError in the runner."""
    from zotune.bench.runner import run_state

    config = load_bench_config(_grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                                     methods={"mezo": {}}))
    (run,) = config.runs()
    run.output_dir.mkdir(parents=True)
    (run.output_dir / "summary.json").write_text("[1, 2, 3]")
    assert run_state(run) == "new"


def test_paired_differences_come_with_a_t_interval_and_say_when_it_holds_zero():
    from zotune.bench.report import _interval_cell, paired_interval

    mean, low, high = paired_interval([1.0, 2.0, 3.0])  # sd 1, t(2) = 4.303: half-width 4.303 / sqrt(3)
    assert mean == 2.0 and abs(high - 2.0 - 4.303 / 3 ** 0.5) < 1e-9 and abs(low - (2.0 - 4.303 / 3 ** 0.5)) < 1e-9
    assert _interval_cell([1.0, 2.0, 3.0]) == "+2.0 [-0.5, +4.5] (W/L 3/0, not distinguishable)"
    assert _interval_cell([2.0, 2.1, 1.9, 2.0]) == "+2.0 [+1.9, +2.1] (W/L 4/0)"
    assert _interval_cell([-1.0, 0.0]).endswith("(W/L 0/1, not distinguishable)")
    assert paired_interval([5.0]) is None and _interval_cell([]) == "—"


def test_part_of_a_grid_runs_alone_and_the_rest_completes_it(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0, 1],
                 budget={"steps": 2})
    assert main(["bench", str(grid), "--in-process", "--no-progress", "--methods", "mezo-rademacher",
                 "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "[1/1] mezo-rademacher on rotten_tomatoes, seed 1" in out and "runs: 1 done" in out
    rows = {(r["method"], r["seed"]): r["status"] for r in csv.DictReader((tmp_path / "bench" / "results.csv").open())}
    assert rows == {("mezo", "0"): "missing", ("mezo-rademacher", "0"): "missing", ("mezo", "1"): "missing",
                    ("mezo-rademacher", "1"): "finished"}  # the report covers the whole grid
    assert main(["bench", str(grid), "--in-process", "--no-progress"]) == 0
    assert "runs: 3 done, 1 skipped" in capsys.readouterr().out  # the part is the grid's own run


def test_a_run_another_grid_finished_with_the_same_settings_is_copied_not_run(tiny_model_dir, tiny_data_dir,
                                                                              tmp_path, capsys):
    """Two grids that share MeZO's cells: the second copies the first's finished run (logs, no weights) when the
    settings match, and runs it itself when they do not."""
    for name in "abc":
        (tmp_path / name).mkdir()
    first = _grid(tmp_path / "a", tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                  methods={"mezo": {}}, budget={"steps": 2})
    assert main(["bench", str(first), "--in-process", "--no-progress"]) == 0
    source = tmp_path / "a" / "bench" / "runs" / "mezo" / "rotten_tomatoes" / "seed0"
    (source / "best").mkdir(exist_ok=True)  # weights are never copied
    before = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}

    second = _grid(tmp_path / "b", tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                   methods={"mezo": {}, "mezo-rademacher": {"method": "mezo", "noise": "rademacher"}},
                   budget={"steps": 2}, reuse_from=[str(tmp_path / "a" / "bench")])
    capsys.readouterr()
    assert main(["bench", str(second), "--in-process", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[1/2] mezo on rotten_tomatoes, seed 0: finished by another grid with the same settings, copied" in out
    assert "runs: 1 done, 1 reused" in out
    copied = tmp_path / "b" / "bench" / "runs" / "mezo" / "rotten_tomatoes" / "seed0"
    assert (copied / "reused-from.txt").read_text().strip() == str(source)
    assert all((copied / name).read_bytes() == data for name, data in before.items()) and not (copied / "best").exists()
    assert {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()} == before  # the source is untouched
    rows = {r["method"]: (r["status"], r["reused_from"])
            for r in csv.DictReader((tmp_path / "b" / "bench" / "results.csv").open())}
    assert rows == {"mezo": ("finished", str(source)), "mezo-rademacher": ("finished", "")}
    assert "1 of them were finished by another grid" in (tmp_path / "b" / "bench" / "results.md").read_text()
    assert main(["bench", str(second), "--in-process", "--no-progress"]) == 0
    assert "runs: 2 skipped" in capsys.readouterr().out  # a copied run is this grid's own from then on

    other_lr = _grid(tmp_path / "c", tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                     methods={"mezo": {"lr": 1e-3}}, budget={"steps": 2}, reuse_from=[str(tmp_path / "a" / "bench")])
    assert [o.status for o in run_grid(load_bench_config(other_lr), progress=False)] == ["done"]


@pytest.mark.parametrize("reuse_from, message", [("results/x", "must be a list"), ([""], "must be a list"),
                                                 (["OWN"], "names the grid's own output_dir")])
def test_bad_reuse_from_is_one_line(reuse_from, message, tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    own = str(tmp_path / "bench")
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0],
                 reuse_from=[own if r == "OWN" else r for r in reuse_from] if isinstance(reuse_from, list)
                 else reuse_from)
    assert main(["bench", str(grid)]) == 2
    expect_one_line_error(capsys, message)


@pytest.mark.parametrize("flag, value, message", [
    ("--methods", "mezo,fzoo", "--methods fzoo: not in the grid, whose methods are mezo, mezo-rademacher"),
    ("--tasks", "copa", "--tasks copa: not in the grid"),
    ("--seeds", "7", "--seeds 7: not in the grid, whose seeds are 0, 1"),
])
def test_choosing_what_the_grid_does_not_hold_is_one_line(flag, value, message, tiny_model_dir, tiny_data_dir,
                                                           tmp_path, capsys):
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir)
    assert main(["bench", str(grid), "--report-only", flag, value]) == 2
    expect_one_line_error(capsys, message)
    assert not (tmp_path / "bench" / "runs").exists()


def test_seeds_that_are_not_integers_are_argparses_one_line(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir)
    with pytest.raises(SystemExit) as info:
        main(["bench", str(grid), "--report-only", "--seeds", "one"])
    assert info.value.code == 2
    expect_one_line_error(capsys, "argument --seeds: expected comma-separated integers, got 'one'")


def test_a_grid_that_asks_for_bf16_on_a_cpu_that_emulates_it_says_so_before_it_runs(tiny_model_dir, tiny_data_dir,
                                                                                   tmp_path, recwarn, monkeypatch):
    import torch

    import zotune.train.machine as machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    common = {"model": str(tiny_model_dir), "data_dir": str(tiny_data_dir), "batch_size": 8, "num_train": 16,
              "num_dev": 8, "num_eval": 8, "eval_steps": 1, "autocast": "bfloat16"}
    grid = _grid(tmp_path, tiny_model_dir, tiny_data_dir, tasks=["rotten_tomatoes"], seeds=[0], methods=["mezo"],
                 budget={"steps": 1}, common=common)
    for flags, warned in (([], True), (["avx512_bf16"], False)):
        monkeypatch.setattr(machine, "cpu_info", lambda flags=flags: {"cpu_model": "test", "cpu_bf16": flags})
        recwarn.clear()
        assert main(["bench", str(grid), "--no-progress", "--force"]) == 0
        said = [str(w.message) for w in recwarn]
        assert any(m.startswith("1 of this grid's 1 runs ask for bf16: bf16 is emulated on this CPU")
                   for m in said) == warned
