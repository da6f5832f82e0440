"""Hostile use of run folders and models (docs/reliability.md, "Rules"): zotune never overwrites what it did
not create in this run unless told to, never writes its inputs, lets one process write a folder at a time,
resumes only what the checkpoint was made with, and never reports a number that is not what it says."""

import json
import os
import shutil
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from hostile import TRAIN_FILE, expect_one_line_error, snapshot, train_args
from zotune.cli import _format_warning, main
from zotune.errors import ZotuneWarning
from zotune.files.outputs import FolderLock

# --- replay --out (item 1) ---------------------------------------------------------------------------------


def _replay(run, out, *extra):
    return main(["replay", "--log", str(run / "out" / "seeds.jsonl"), "--out", str(out), "--no-progress", *extra])


def test_replay_into_the_runs_own_folder_is_refused(run, capsys):
    before = snapshot(run / "out")
    assert _replay(run, run / "out") == 2
    expect_one_line_error(capsys, "would overwrite --log")
    assert snapshot(run / "out") == before


def test_replay_into_a_folder_with_other_files_is_refused_unless_told(run, capsys):
    (run / "mine").mkdir()
    (run / "mine" / "notes.txt").write_text("keep me")
    assert _replay(run, run / "mine") == 2
    expect_one_line_error(capsys, "already exists and is not empty: pass --overwrite")
    assert (run / "mine" / "notes.txt").read_text() == "keep me"
    assert _replay(run, run / "mine", "--overwrite") == 0
    assert (run / "mine" / "model.safetensors").is_file()


def test_replay_onto_the_base_model_folder_is_refused(run, tiny_model_dir, capsys, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    before = snapshot(base)
    log = run / "out" / "seeds.jsonl"
    assert main(["replay", "--log", str(log), "--base", str(base), "--out", str(base), "--overwrite"]) == 2
    expect_one_line_error(capsys, "would overwrite --base")
    assert snapshot(base) == before


def test_replay_into_the_current_folder_is_one_line_error(run, capsys, monkeypatch):
    monkeypatch.chdir(run / "data")
    assert main(["replay", "--log", str(run / "out" / "seeds.jsonl"), "--out", ".", "--overwrite"]) == 2
    expect_one_line_error(capsys, "is the current folder")
    assert (run / TRAIN_FILE).is_file()


# --- no dev set (item 2) -----------------------------------------------------------------------------------


def test_without_a_dev_set_the_final_weights_are_saved_scored_and_named(run, tiny_model_dir, capsys):
    out = run / "nodev"
    args = train_args(tiny_model_dir, run / "data", out, "--num-dev", "0")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "final weights, step 3: no dev set to select with" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_step"] == 3 and summary["best_dev_score"] is None
    best = load_file(str(out / "best" / "model.safetensors"))
    trained = load_file(str(out / "checkpoint" / "weights.safetensors"))
    assert all(torch.equal(best[name], tensor) for name, tensor in trained.items())
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert not all(torch.equal(base[name], best[name]) for name in base)  # not the untrained model


# --- incomplete models (item 3) ----------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing_tensor", "unrelated_tensors", "garbage_bin"])
def test_a_model_folder_that_does_not_load_completely_is_an_error(damage, run, tiny_model_dir, capsys, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    if damage == "missing_tensor":
        tensors = load_file(str(weights))
        del tensors["model.layers.0.mlp.up_proj.weight"]
        save_file(tensors, str(weights), metadata={"format": "pt"})
        pattern = "lack (or mis-shape) 1 tensor(s) of its architecture (model.layers.0.mlp.up_proj.weight)"
    elif damage == "unrelated_tensors":
        save_file({"something.else": torch.zeros(3)}, str(weights), metadata={"format": "pt"})
        pattern = "is incomplete"
    else:
        weights.unlink()
        (model / "pytorch_model.bin").write_bytes(b"not a tensor file")
        pattern = "Could not load model"
    assert main(train_args(model, run / "data", run / "new")) == 2
    expect_one_line_error(capsys, pattern)
    assert main(["eval", "--model", str(model), "--data-dir", str(run / "data"), "--num-eval", "4"]) == 2
    expect_one_line_error(capsys, pattern)


def test_a_model_that_needs_custom_code_is_refused_without_a_prompt(run, tiny_model_dir, capsys, tmp_path,
                                                                    monkeypatch):
    model = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    config["model_type"] = "evil"  # not a type transformers knows: only the custom code could load it
    (model / "config.json").write_text(json.dumps(config))
    (model / "evil.py").write_text("raise SystemExit('custom code ran')\n")
    monkeypatch.setattr(sys, "stdin", None)  # a prompt would read it
    assert main(train_args(model, run / "data", run / "new")) == 2
    expect_one_line_error(capsys, "--trust-remote-code")


# --- one writer (item 4) -----------------------------------------------------------------------------------


def test_a_second_writer_is_refused_and_told_who_holds_the_folder(run, tiny_model_dir, capsys):
    before = snapshot(run / "out")
    with FolderLock(run / "out"):
        assert main(train_args(tiny_model_dir, run / "data", run / "out", "--steps", "6", "--resume")) == 2
    expect_one_line_error(capsys, f"is in use by process {os.getpid()}")
    assert snapshot(run / "out") == before
    # The lock goes with its holder: the run can go on now.
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--steps", "6", "--resume")) == 0


# --- resume checks the settings and the data (item 5) ------------------------------------------------------


@pytest.mark.parametrize("flag,value,named", [
    ("--lr", "1e-3", "lr 0.002 -> 0.001"), ("--eps", "1e-3", "eps 0.01 -> 0.001"),
    ("--batch-size", "4", "batch_size 8 -> 4"), ("--seed", "5", "seed 0 -> 5"),
    ("--n-directions", "2", "n_directions 1 -> 2"), ("--data-seed", "1", "the sampled data"),
])
def test_resume_with_other_settings_is_refused_naming_them(flag, value, named, run, tiny_model_dir, capsys):
    before = snapshot(run / "out")
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--steps", "6", "--resume", flag, value)) == 2
    expect_one_line_error(capsys, named)
    assert snapshot(run / "out") == before


def test_resume_with_edited_training_labels_is_refused(run, tiny_model_dir, capsys):
    rows = [json.loads(line) for line in (run / TRAIN_FILE).read_text().splitlines()]
    for row in rows:
        row["label"] = 1 - row["label"]
    (run / TRAIN_FILE).write_text("".join(json.dumps(row) + "\n" for row in rows))
    before = snapshot(run / "out")
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--steps", "6", "--resume")) == 2
    expect_one_line_error(capsys, "the sampled data")
    assert snapshot(run / "out") == before


def test_a_replaced_run_killed_before_its_first_checkpoint_does_not_resume_the_old_one(run, tiny_model_dir, capsys,
                                                                                      monkeypatch):
    import zotune.train.loop as loop

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "evaluate", killed)  # dies at its zero-shot evaluation
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--overwrite", "--seed", "1")) == 130
    assert not (run / "out" / "checkpoint").exists() and not (run / "out" / "summary.json").exists()
    monkeypatch.undo()
    capsys.readouterr()  # the killed run's "zotune: interrupted"
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--seed", "1", "--resume")) == 2
    expect_one_line_error(capsys, "no checkpoint to resume from (it was stopped before its first): start it over "
                                  "with --overwrite")
    with pytest.warns(ZotuneWarning, match="No checkpoint"):
        assert main(train_args(tiny_model_dir, run / "data", run / "out", "--seed", "1", "--resume",
                               "--overwrite")) == 0
    assert main(["replay", "--log", str(run / "out" / "seeds.jsonl"), "--out", str(run / "re"),
                 "--no-progress"]) == 0
    assert "bitwise equal" in capsys.readouterr().out


# --- a finished run is not overwritten (item 6) ------------------------------------------------------------


def test_a_new_run_over_a_finished_one_is_refused(run, tiny_model_dir, capsys):
    before = snapshot(run / "out")
    assert main(train_args(tiny_model_dir, run / "data", run / "out")) == 2
    expect_one_line_error(capsys, "already holds a run (seeds.jsonl, metrics.jsonl, summary.json")
    assert snapshot(run / "out") == before


def test_overwrite_replaces_only_zotunes_own_files(run, tiny_model_dir):
    (run / "out" / "notes.txt").write_text("mine")
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--overwrite", "--seed", "3")) == 0
    assert (run / "out" / "notes.txt").read_text() == "mine"
    assert json.loads((run / "out" / "summary.json").read_text())["config"]["seed"] == 3


def test_training_from_a_runs_best_into_that_run_is_refused(run, capsys):
    before = snapshot(run / "out")
    assert main(train_args(run / "out" / "best", run / "data", run / "out", "--overwrite")) == 2
    expect_one_line_error(capsys, "would overwrite --model")
    assert snapshot(run / "out") == before


def test_meta_train_never_writes_into_the_model(run, tiny_model_dir, capsys, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = snapshot(model)
    args = ["meta-train", "--model", str(model), "--task", "rotten_tomatoes", "--data-dir", str(run / "data"),
            "--num-train", "16", "--max-steps", "1", "--output-dir", str(tmp_path / "meta"), "--no-progress"]
    assert main([*args, "--out", str(model / "model.safetensors"), "--overwrite"]) == 2
    expect_one_line_error(capsys, "would overwrite --model")
    assert snapshot(model) == before
    (tmp_path / "ctrl.safetensors").write_bytes(b"someone else's")
    assert main([*args, "--out", str(tmp_path / "ctrl.safetensors")]) == 2
    expect_one_line_error(capsys, "already exist(s)")
    assert (tmp_path / "ctrl.safetensors").read_bytes() == b"someone else's"


# --- smaller (item 12) -------------------------------------------------------------------------------------


def test_resume_with_a_corrupt_seed_log_changes_nothing(run, tiny_model_dir, capsys):
    log = run / "out" / "seeds.jsonl"
    log.write_text(log.read_text().replace('"seed": ', '"seed": "x', 1))
    before = snapshot(run / "out")
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--steps", "6", "--resume")) == 2
    expect_one_line_error(capsys, "seeds.jsonl:1: corrupt seed log line")
    assert snapshot(run / "out") == before


def test_an_end_line_with_a_string_step_count_is_an_error(run, capsys):
    log = run / "out" / "seeds.jsonl"
    # As a log without checksums (older zotune): the end line's own check must hold by itself.
    lines = [{k: v for k, v in json.loads(text).items() if k != "check"} for text in log.read_text().splitlines()]
    lines[-1]["steps"] = "3"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert _replay(run, run / "re") == 2
    expect_one_line_error(capsys, "corrupt seed log line (bad or missing end line: steps or sha256)")


def test_a_symlinked_checkpoint_folder_survives_repeated_saves(run, tiny_model_dir, tmp_path):
    elsewhere = tmp_path / "other-disk" / "ckpt"
    elsewhere.parent.mkdir()
    shutil.move(run / "out" / "checkpoint", elsewhere)
    (run / "out" / "checkpoint").symlink_to(elsewhere)
    args = train_args(tiny_model_dir, run / "data", run / "out", "--steps", "9", "--eval-steps", "2", "--resume")
    assert main(args) == 0
    assert (run / "out" / "checkpoint").is_symlink()
    assert json.loads((elsewhere / "loop_state.json").read_text())["step"] == 9


def test_other_libraries_warnings_are_not_printed_as_zotunes():
    assert _format_warning("careful", ZotuneWarning, "x.py", 1) == "zotune: warning: careful\n"
    text = _format_warning("old API", FutureWarning, "/site-packages/torch/nn.py", 7)
    assert text == "FutureWarning (nn.py:7): old API\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the formatter itself must not warn
        _format_warning("x", DeprecationWarning, "y.py", 2)
