"""The CLI end to end on a tiny model and tiny data, and its one-line errors with exit code 2."""

import json

import pytest

from zotune.cli import build_parser, main


def _train_args(model_dir, data_dir, out, *extra):
    return ["train", "--model", str(model_dir), "--data-dir", str(data_dir), "--output-dir", str(out),
            "--steps", "4", "--eval-steps", "2", "--batch-size", "8", "--num-train", "32", "--num-dev", "8",
            "--num-eval", "16", "--lr", "2e-3", "--eps", "1e-2", "--no-progress", *extra]


def test_train_end_to_end_prints_a_summary(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_model_dir, tiny_data_dir, out)) == 0
    printed = capsys.readouterr().out
    assert "zero-shot" in printed and "fine-tuned" in printed and "gain" in printed
    assert (out / "loss.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["lr"] == 2e-3 and summary["steps"] == 4


def test_yaml_config_with_flag_override(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tiny_model_dir}\ndata_dir: {tiny_data_dir}\nsteps: 2\neval_steps: 2\n"
                      "batch_size: 8\nnum_train: 16\nnum_dev: 8\nnum_eval: 8\nupdate: momentum\nlr: 1.0e-3\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--output-dir", str(out), "--steps", "3",
                 "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["steps"] == 3 and summary["config"]["update"] == "momentum"


def test_eval_scores_the_best_folder_and_a_checkpoint(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_model_dir, tiny_data_dir, out)) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "best"), "--data-dir", str(tiny_data_dir),
                 "--num-train", "32", "--num-dev", "8", "--num-eval", "16"]) == 0
    assert "rotten_tomatoes eval (16 examples): accuracy" in capsys.readouterr().out
    assert main(["eval", "--model", str(tiny_model_dir), "--checkpoint", str(out / "checkpoint"),
                 "--data-dir", str(tiny_data_dir), "--num-eval", "16"]) == 0


def test_resume_continues_from_the_checkpoint(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_model_dir, tiny_data_dir, out)) == 0
    assert main([*_train_args(tiny_model_dir, tiny_data_dir, out), "--steps", "6", "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_adalezo_logs_layer_draws_per_interval_and_plots_them(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_model_dir, tiny_data_dir, out, "--method", "adalezo",
                            "--option", "sample_fraction=0.5")) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    reports = [r for r in records if r["kind"] == "sampler"]
    assert [r["step"] for r in reports] == [2, 4]
    assert all(sum(r["draws"]) == 2 * 2 for r in reports)  # k = 2 draws per step, 2 steps per interval
    assert reports[0]["arms"] == ["embed", "model.layers.0", "model.layers.1", "rest"]
    assert all("clipped_fraction" in r and "layers_sampled" in r for r in records if r["kind"] == "train")
    assert (out / "layers.png").stat().st_size > 1000


def test_dizo_logs_each_projection_round_and_probes_on_fresh_batches(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                    capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_model_dir, tiny_data_dir, out, "--method", "dizo", "--option", "interval=2",
                            "--option", "probes=3")) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in records if r["kind"] == "method"]
    assert [r["step"] for r in rounds] == [2, 4] and all(r["event"] == "projection" for r in rounds)
    assert all(0.8 <= r["ratio_min"] <= r["ratio_max"] <= 1.2 for r in rounds)
    assert len(rounds[0]["divergence_norms"]) == 4  # k and v projections of 2 layers
    last_train = [r for r in records if r["kind"] == "train"][-1]
    assert last_train["forward_passes"] == 4 * 2 + 2 * 6  # 2 rounds of 2J passes
    assert "step's own batch" not in capsys.readouterr().err


def test_method_option_flags_reach_the_method(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_model_dir, tiny_data_dir, out, "--method", "ldsd", "--ldsd-lr-mu", "0",
                            "--ldsd-candidates", "2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["method_options"] == {"lr_mu": 0, "candidates": 2}
    assert summary["forward_passes"] == 4 * 3  # K + 1 per step
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["mu_norm"] == 0.0 for r in records if r["kind"] == "train")  # the best-of-K ablation


def test_sampler_flag_puts_adalezo_on_another_update_rule(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_model_dir, tiny_data_dir, out, "--sampler", "adalezo", "--update", "adam",
                            "--lr", "1e-3")) == 0
    assert "mezo (adam, sampler adalezo)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["sampler"] == "adalezo" and "layers" in summary["files"]


def test_list_names_methods_rules_and_tasks(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert "adalezo" in printed and "samplers:" in printed and "adam" in printed and "rotten_tomatoes" in printed and "smollm2-135m" in printed
    assert "noises:       gaussian, gaussian16, rademacher, torch-gaussian" in printed


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("case,pattern", [
    ("unknown_task", "Unknown task 'sst3'. Did you mean 'sst2'?"),
    ("unknown_method", "Unknown method 'mezzo'"),
    ("unknown_update", "Unknown update rule 'adamw'. Did you mean 'adam'?"),
    ("unknown_sampler", "Unknown sampler 'adalezzo'. Did you mean 'adalezo'?"),
    ("bad_sampler_option", "Invalid sample_fraction: 2 (must be in (0, 1])"),
    ("dizo_patterns_match_nothing", "DiZO's projected_patterns ['nope'] match none of the"),
    ("option_of_another_method", "Unknown option(s) ['sample_fraction'] for method 'mezo' with sampler 'full'"),
    ("missing_model", "Model path not found"),
    ("missing_data_dir", "Data directory not found"),
    ("bad_value", "Invalid lr: -1.0"),
    ("bad_option", "Invalid --option 'rho' (expected KEY=VALUE)"),
    ("unknown_yaml_key", "Unknown config key(s) ['learning_rate']"),
    ("missing_config", "Cannot read config file"),
])
def test_bad_input_gives_one_line_and_exit_code_2(case, pattern, tiny_model_dir, tiny_data_dir, tmp_path,
                                                   capsys):
    data = tiny_data_dir
    extra: list[str] = []
    model = str(tiny_model_dir)
    flag_cases = {
        "unknown_task": ["--task", "sst3"],
        "unknown_method": ["--method", "mezzo"],
        "unknown_update": ["--update", "adamw"],
        "unknown_sampler": ["--sampler", "adalezzo"],
        "bad_sampler_option": ["--method", "adalezo", "--option", "sample_fraction=2"],
        "dizo_patterns_match_nothing": ["--method", "dizo", "--option", "projected_patterns=[nope]"],
        "option_of_another_method": ["--option", "sample_fraction=0.3"],
        "bad_value": ["--lr", "-1"],
        "bad_option": ["--option", "rho"],
    }
    if case in flag_cases:
        extra = flag_cases[case]
    elif case == "missing_model":
        model = str(tmp_path / "no-such-model")
    elif case == "missing_data_dir":
        data = tmp_path / "nowhere"
    elif case == "unknown_yaml_key":
        extra = ["--config", str(_write(tmp_path / "c.yaml", "learning_rate: 0.1\n"))]
    elif case == "missing_config":
        extra = ["--config", str(tmp_path / "none.yaml")]
    args = _train_args(model, data, tmp_path / "out", *extra)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zotune: error: ")
    assert pattern in err[0]


def test_unknown_flag_is_an_argparse_error_with_exit_code_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--bogus"])
    assert info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_type_error_in_a_flag_is_exit_code_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--steps", "many"])
    assert info.value.code == 2


@pytest.mark.parametrize("argv,pattern", [
    (["train", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
    (["train", "--out", "x"], "unrecognized arguments: --out x"),  # no abbreviation of --output-dir
    (["eval", "--task", "sst2"], "the following arguments are required: --model"),
])
def test_a_bad_flag_is_one_line_not_the_usage_block(argv, pattern, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("zotune: error: ") and pattern in err[0], err


def test_version(capsys):
    from zotune import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"zotune {__version__}"


def test_an_unknown_name_is_refused_before_the_banner_and_any_folder(tmp_path, capsys):
    assert main(["train", "--method", "mezzo", "--output-dir", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Unknown method 'mezzo'" in captured.err
    assert not (tmp_path / "out").exists()


def test_help_shows_each_default_once():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "(default: the method's own)" in " ".join(text.split()) and "own) (default" not in text


def _reviews_csv(folder, rows):
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["review", "stars"])
            writer.writerows(rows)
    return folder


def _tiny_reviews():
    from pathlib import Path

    path = Path(__file__).parent / "assets" / "tiny_sentiment" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(row["text"], 5 if row["label"] else 1) for row in rows]


def test_your_own_csv_trains_from_the_cli(tiny_model_dir, tmp_path, capsys):
    data = _reviews_csv(tmp_path / "reviews", _tiny_reviews())
    args = _train_args(tiny_model_dir, data, tmp_path / "out", "--task", "custom", "--template", "{review} It was",
                       "--label-column", "stars", "--label-words", "1=terrible,5=great")
    assert main(args) == 0
    assert "Held-out accuracy" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["label_words"] == "1=terrible,5=great" and summary["steps"] > 0


@pytest.mark.parametrize("extra,pattern", [
    (["--label-words", "1=terrible,5=great"], "field(s) ['text']"),  # the default template reads `text`
    (["--text-column", "review", "--label-words", "terrible,great"], "label '5' in column 'stars' is not one of"),
    (["--text-column", "review"], "--task custom and --label-words go together"),
    (["--text-column", "review", "--label-words", "great"], "Invalid label_words 'great'"),
    (["--template", "{review[0]} x", "--label-words", "1=a,5=b"], "Invalid template"),
])
def test_bad_custom_data_settings_are_one_line_errors(extra, pattern, tiny_model_dir, tmp_path, capsys):
    data = _reviews_csv(tmp_path / "reviews", _tiny_reviews())
    assert main(_train_args(tiny_model_dir, data, tmp_path / "out", "--task", "custom", "--label-column", "stars",
                            *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zotune: error: ") and pattern in err[0], err


def test_report_to_tensorboard_writes_event_files_and_best_has_a_model_card(tiny_model_dir, tiny_data_dir, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "out"
    assert main(_train_args(tiny_model_dir, tiny_data_dir, out, "--report-to", "tensorboard")) == 0
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(out / "tensorboard")).Reload().Tags()["scalars"]
    assert "train/loss" in scalars and "dev/score" in scalars
    card = (out / "best" / "README.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert "zeroth-order" in card and "**mezo**" in card
    assert f"{summary['final']['eval_score']:.4f}" in card and f"step {summary['best_step']} of 4" in card


def test_report_to_an_unknown_tracker_is_refused(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    assert main(_train_args(tiny_model_dir, tiny_data_dir, tmp_path / "out", "--report-to", "mlflow")) == 2
    assert "Invalid report_to 'mlflow'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_your_own_data_as_a_saved_datasets_folder(tiny_model_dir, tmp_path, capsys):
    import datasets

    rows = [{"review": text, "stars": stars} for text, stars in _tiny_reviews()]
    saved = tmp_path / "saved"
    datasets.DatasetDict({split: datasets.Dataset.from_list(rows) for split in ("train", "validation")}) \
        .save_to_disk(str(saved))
    args = _train_args(tiny_model_dir, saved, tmp_path / "out", "--task", "custom", "--text-column", "review",
                       "--label-column", "stars", "--label-words", "1=terrible,5=great")
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps"] == 4


def test_no_save_best_lists_no_best_folder(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_model_dir, tiny_data_dir, out, "--no-save-best")) == 0
    printed = capsys.readouterr().out
    assert not (out / "best").exists() and "  best " not in printed and "seed_log" in printed


def test_a_registered_recipe_is_a_subcommand(tmp_path, monkeypatch, capsys):
    import zotune.methods  # noqa: F401  (registers the methods' recipes before the registry is copied below)
    from zotune.recipes import RECIPES, register_recipe

    (tmp_path / "hello_recipe.py").write_text(
        "def add_arguments(parser, add_setting_flags):\n"
        "    parser.add_argument('--times', type=int, default=1)\n"
        "def run(args, say):\n"
        "    say('hello ' * args.times)\n"
        "    return 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(RECIPES, "_entries", dict(RECIPES._entries))
    monkeypatch.setattr(RECIPES, "_shown", dict(RECIPES._shown))
    register_recipe("hello", "hello_recipe", help="greet")
    assert main(["hello", "--times", "2"]) == 7
    assert "hello hello" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:  # its flags are checked like the built-in commands'
        main(["hello", "--bad"])
    assert exit_.value.code == 2 and "unrecognized arguments: --bad" in capsys.readouterr().err


def test_the_subcommands_are_the_registered_recipes():
    """The command line holds no subcommand of its own: each is a recipe, the built-in ones first."""
    import argparse

    from zotune.recipes import BUILT_IN, RECIPES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [*BUILT_IN, *(n for n in RECIPES.names() if n not in BUILT_IN)]
    assert "meta-train" in sub.choices and set(RECIPES.names()) == set(sub.choices)
