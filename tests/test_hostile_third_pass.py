"""The third hostile pass: a diverged model is never best nor scored, saved numbers say what happened, bad files
and absurd flags get one-line errors (each test here failed before its fix)."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from hostile import expect_one_line_error, train_args
from zotune.cli import main

# --- a diverged model is never best, never good, never scored -----------------------------------------------


@pytest.mark.parametrize("lr", ["1e15", "1e38"])
def test_a_diverged_run_never_saves_or_scores_non_finite_weights_or_outputs(run, tiny_model_dir, capsys, lr):
    """--lr 1e15 once exited 0 with "fine-tuned 0.5000" and a best/ whose every logit was NaN; --lr 1e38 stopped
    pointing at a "last good checkpoint" with non-finite weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = run / "diverged"
    args = train_args(tiny_model_dir, run / "data", out, "--lr", lr, "--steps", "8", "--eval-steps", "4",
                      "--max-nonfinite", "100")
    code = main(args)
    printed = capsys.readouterr()
    assert (out / "best" / "model.safetensors").is_file()  # the zero-shot weights at least
    for folder, name in ((out / "best", "model.safetensors"), (out / "checkpoint", "weights.safetensors")):
        if (folder / name).is_file():  # a run stopped before its first checkpoint has none
            assert all(bool(torch.isfinite(t).all()) for t in load_file(str(folder / name)).values())
    if code == 0:
        # Every step that finished had finite losses; what was chosen as best gives finite outputs.
        model = AutoModelForCausalLM.from_pretrained(out / "best").eval()
        ids = AutoTokenizer.from_pretrained(out / "best")("good fun . It was", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            assert torch.isfinite(model(ids).logits).all()
    else:
        assert code == 2 and "non-finite" in printed.err and "fine-tuned" not in printed.out
    if lr == "1e15":
        assert code == 2


def test_a_model_with_nan_outputs_scores_nan_not_an_accuracy(tiny_model_and_tokenizer):
    from zotune.tasks import TASKS, encode, evaluate

    model, tokenizer = tiny_model_and_tokenizer
    rows = [{"text": "good fun", "label": 1}, {"text": "dull mess", "label": 0}]
    examples = encode(TASKS.get("rotten_tomatoes"), rows, tokenizer)
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    scores = evaluate(model, examples, tokenizer.pad_token_id)
    assert math.isnan(scores["accuracy"]) and math.isnan(scores["score"]) and math.isnan(scores["loss"])


# --- numbers saved are what happened ------------------------------------------------------------------------


def test_a_short_split_is_saved_and_printed_as_the_rows_used_not_as_asked(run, tiny_model_dir, capsys):
    out = run / "short"
    rows = len((run / "data" / "rotten_tomatoes" / "train.jsonl").read_text().splitlines())
    args = train_args(tiny_model_dir, run / "data", out, "--num-train", str(rows), "--num-dev", "200")
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    used = summary["data"]
    assert used["train"] + used["dev"] == rows and used["dev"] < 200
    card = (out / "best" / "README.md").read_text()
    assert f"{used['train']} training / {used['dev']} dev / {used['eval']} held-out" in card
    assert f"({used['eval']} examples)" in capsys.readouterr().out


def test_a_refused_resume_never_names_a_budget_the_run_did_not_use(run, tiny_model_dir, capsys):
    """The run used 3 steps under a constant schedule; resuming it with cosine once reported "steps 60 -> 8"."""
    out = run / "out"
    args = train_args(tiny_model_dir, run / "data", out, "--resume", "--lr-scheduler", "cosine", "--steps", "8")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "lr_scheduler 'constant' -> 'cosine'" in err and "steps 60" not in err


# --- a full disk, a deleted best/ ---------------------------------------------------------------------------


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_naming_the_folder_and_the_space(run, tiny_model_dir,
                                                                                          capsys, monkeypatch):
    import zotune.train.checkpoint as checkpoint

    def full(*args, **kwargs):  # what safetensors raises when the disk fills
        raise Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                        'message: "No space left on device" })')

    monkeypatch.setattr(checkpoint, "save_file", full)
    before = (run / "out" / "checkpoint" / "weights.safetensors").read_bytes()
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--resume", "--steps", "6")) == 2
    expect_one_line_error(capsys, "No space left on device to save checkpoint: it needs about")
    assert (run / "out" / "checkpoint" / "weights.safetensors").read_bytes() == before


def test_resume_with_best_deleted_is_refused_before_training(run, tiny_model_dir, capsys):
    import shutil

    shutil.rmtree(run / "out" / "best")
    metrics = (run / "out" / "metrics.jsonl").read_text()
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--resume", "--steps", "6")) == 2
    expect_one_line_error(capsys, "best is missing or incomplete")
    assert (run / "out" / "metrics.jsonl").read_text() == metrics  # nothing trained, nothing written
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--resume", "--steps", "6",
                           "--no-save-best")) == 0


# --- inputs built to exhaust memory -------------------------------------------------------------------------


def test_a_yaml_of_nested_aliases_is_refused_at_once(tmp_path, capsys):
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    config = tmp_path / "laughs.yaml"
    config.write_text("\n".join(levels) + "\n")
    assert len(config.read_bytes()) < 600
    assert main(["train", "--config", str(config)]) == 2
    expect_one_line_error(capsys, "expands to more than 100,000 values")


@pytest.mark.parametrize("content, message", [
    (b"steps: 3\nsteps: 4\n", "the key 'steps' is given twice (line 2)"),
    ("\ufeffsteps: 3\n".encode("utf-16"), "not UTF-8 text"),
], ids=["duplicate-key", "utf-16"])
def test_yaml_files_with_a_duplicate_key_or_not_utf8_are_one_line_errors(tmp_path, capsys, content, message):
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    assert main(["train", "--config", str(config)]) == 2
    expect_one_line_error(capsys, message)


def test_a_bench_grid_with_a_duplicate_key_is_one_line(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("tasks: [sst2]\ntasks: [rte]\nmethods: {mezo: {}}\n")
    assert main(["bench", str(grid), "--report-only"]) == 2
    expect_one_line_error(capsys, "is given twice")


@pytest.mark.parametrize("flags, message", [
    (["--template", "{text:>300000000} It was", "--task", "custom", "--label-words", "terrible,great"],
     "take no format spec"),
    (["--threads", "100000"], "Invalid threads: 100000"),
    (["--n-directions", "100000000"], "Invalid n_directions: 100000000"),
], ids=["template-width", "threads", "n-directions"])
def test_flags_that_would_exhaust_memory_or_threads_are_refused_up_front(run, tiny_model_dir, capsys, flags,
                                                                         message):
    out = run / "absurd"
    assert main(train_args(tiny_model_dir, run / "data", out, *flags)) == 2
    expect_one_line_error(capsys, message)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_replay_of_a_log_that_is_not_a_regular_file_is_refused(tmp_path, capsys, kind):
    import os

    if kind == "fifo":
        log = tmp_path / "seeds.fifo"
        os.mkfifo(log)
    else:
        log = "/dev/zero"
    assert main(["replay", "--log", str(log), "--out", str(tmp_path / "out")]) == 2
    expect_one_line_error(capsys, "is not a regular file")


# --- seed-log checks that could be sidestepped --------------------------------------------------------------


def _edit_log(path, edit):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    edit(lines)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_a_step_line_with_its_checksum_deleted_is_named_not_blamed_on_float_kernels(run, capsys):
    def edit(lines):
        del lines[2]["check"]
        lines[2]["lr"] = lines[2]["lr"] * 2

    _edit_log(run / "out" / "seeds.jsonl", edit)
    assert main(["replay", "--log", str(run / "out" / "seeds.jsonl"), "--out", str(run / "replayed")]) == 2
    expect_one_line_error(capsys, "seeds.jsonl:3: the line has no checksum")


def test_an_end_line_claiming_more_steps_than_the_log_holds_is_refused(run, capsys):
    from zotune.train.seedlog import _checksum

    def edit(lines):
        lines[-1]["steps"] = 10**18
        del lines[-1]["check"]
        lines[-1]["check"] = _checksum(lines[-1])

    _edit_log(run / "out" / "seeds.jsonl", edit)
    assert main(["replay", "--log", str(run / "out" / "seeds.jsonl"), "--out", str(run / "replayed")]) == 2
    expect_one_line_error(capsys, "the end line says 1000000000000000000 steps, the log holds 3")


# --- accepted nonsense --------------------------------------------------------------------------------------


def test_label_words_that_tokenise_to_the_same_ids_are_refused(run, tiny_model_dir, capsys):
    # Neither word is in the tiny tokenizer's vocabulary: both are [UNK].
    args = train_args(tiny_model_dir, run / "data", run / "unk", "--task", "custom", "--label-words",
                      "zyxxy,quorp")
    (run / "data" / "custom").mkdir()
    for split in ("train", "validation"):
        (run / "data" / "custom" / f"{split}.jsonl").write_text(
            (run / "data" / "rotten_tomatoes" / f"{split}.jsonl").read_text())
    args[args.index("--data-dir") + 1] = str(run / "data" / "custom")
    assert main(args) == 2
    expect_one_line_error(capsys, "tokenise to the same tokens")


@pytest.mark.parametrize("flags, message", [
    (["--template", "{text} It was"], "--template: for --task custom only"),
    (["--text-column", "review"], "--text-column: for --task custom only"),
], ids=["template", "text-column"])
def test_custom_task_settings_with_a_built_in_task_are_refused(run, tiny_model_dir, capsys, flags, message):
    assert main(train_args(tiny_model_dir, run / "data", run / "new", *flags)) == 2
    expect_one_line_error(capsys, message)


@pytest.mark.parametrize("flags, named", [
    (["--lora-r", "4"], "--lora-r (without --peft lora)"),
    (["--peft", "lora", "--prefix-tokens", "3"], "--prefix-tokens (without --peft prefix)"),
    (["--min-lr-ratio", "0.1"], "--min-lr-ratio (with the constant schedule)"),
    (["--lr-scheduler", "cosine", "--warmup-steps", "10"], "part of --warmup-steps 10 (the run has 3 steps"),
], ids=["lora-r", "prefix-tokens", "min-lr-ratio", "warmup"])
def test_settings_that_change_nothing_are_named_once(run, tiny_model_dir, flags, named):
    from zotune.errors import ZotuneWarning

    with pytest.warns(ZotuneWarning, match="change nothing in this run") as caught:
        assert main(train_args(tiny_model_dir, run / "data", run / "new", *flags)) == 0
    messages = [str(w.message) for w in caught if "change nothing" in str(w.message)]
    assert len(messages) == 1 and named in messages[0]


def test_a_bench_method_that_sets_its_own_task_is_refused(tmp_path, tiny_model_dir, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"tasks: [rotten_tomatoes]\nbudget: {{steps: 2}}\ncommon: {{model: {tiny_model_dir}}}\n"
                    "methods: {mezo: {task: sst2}}\n")
    assert main(["bench", str(grid), "--report-only"]) == 2
    expect_one_line_error(capsys, "'mezo' sets task, which the grid's tasks set")


# --- data and files -----------------------------------------------------------------------------------------


def test_csv_fields_keep_their_carriage_returns(tmp_path):
    from zotune.tasks import read_rows

    path = tmp_path / "train.csv"
    path.write_bytes(b'text,label\r\n"one\rtwo",1\r\n"three\r\nfour",0\r\n')
    assert [r["text"] for r in read_rows(path)] == ["one\rtwo", "three\r\nfour"]


def test_overwrite_never_deletes_a_user_file_inside_best(run, tiny_model_dir, capsys):
    (run / "out" / "best" / "my-notes.txt").write_text("keep me")
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--overwrite")) == 2
    expect_one_line_error(capsys, "--overwrite would delete files zotune did not write (best/my-notes.txt)")
    assert (run / "out" / "best" / "my-notes.txt").read_text() == "keep me"
    assert (run / "out" / "best" / "model.safetensors").is_file()


def test_tensorboard_shows_each_step_once_after_a_resume_and_one_writer_per_name(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from zotune.train.logging import TensorBoardLogger, tracker_loggers

    first = TensorBoardLogger(tmp_path / "tb")
    for step in range(1, 5):  # steps 3 and 4 come after the checkpoint at step 2: the kill loses them
        first.log({"kind": "train", "step": step, "loss": 1.0})
    first.close()
    resumed = TensorBoardLogger(tmp_path / "tb", resume_at=2)
    for step in range(3, 7):
        resumed.log({"kind": "train", "step": step, "loss": 0.5})
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tb")).Reload().Scalars("train/loss")
    assert [e.step for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in events] == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    loggers = tracker_loggers(["tensorboard", "tensorboard"], tmp_path / "run", {}, "x")
    assert len(loggers) == 1
    loggers[0].close()


# --- messages -----------------------------------------------------------------------------------------------


def test_a_mis_shaped_tensor_is_named_with_both_shapes(run, tiny_model_dir, capsys, tmp_path):
    import shutil

    from safetensors.torch import save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    tensors = load_file(str(model / "model.safetensors"))
    tensors["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 5)
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    assert main(train_args(model, run / "data", run / "new")) == 2
    expect_one_line_error(capsys, "model.layers.0.mlp.up_proj.weight (shape [3, 5] in the files, [64, 32] in the "
                                  "architecture)")


def test_a_mistyped_local_folder_fails_at_once_not_after_hub_retries(run, capsys, monkeypatch):
    monkeypatch.chdir(run)
    assert main(train_args("out/bets", run / "data", run / "new")) == 2  # out/best exists
    expect_one_line_error(capsys, "Model path not found: out/bets (out/ exists here, bets is not in it); "
                                  "did you mean out/best?")


def test_a_spec_taken_as_a_hub_id_says_so(monkeypatch, tmp_path):
    from zotune.assets import resolve_model_path
    from zotune.errors import ZotuneWarning

    monkeypatch.chdir(tmp_path)
    with pytest.warns(ZotuneWarning, match="not a local folder nor a built-in model: loading it from the Hugging"):
        assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_second_sigterm_exits_143_and_ctrl_c_at_start_is_one_line(monkeypatch, capsys):
    import os
    import signal

    import zotune.cli as cli
    from zotune.errors import StopNow
    from zotune.train.signals import StopRequests

    with StopRequests() as stop, pytest.raises(StopNow) as second:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)
    assert second.value.signum == signal.SIGTERM

    def stopped(signum):
        def build():
            raise StopNow(signum) if signum else KeyboardInterrupt
        return build

    for signum, code in ((signal.SIGTERM, 143), (None, 130)):
        monkeypatch.setattr(cli, "build_parser", stopped(signum))
        assert cli.main(["list"]) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("zotune: stopped (SIG")


def test_the_command_catches_ctrl_c_from_its_first_moment():
    """The console script imports zotune.cli before main() can catch anything: that import loads no torch."""
    import subprocess
    import sys

    code = "import sys, zotune.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


# --- own data: the rest of the formats ----------------------------------------------------------------------


def test_a_json_array_file_is_read(run, tmp_path):
    from zotune.tasks import TASKS, load_splits

    folder = tmp_path / "arrays"
    folder.mkdir()
    for split in ("train", "validation"):
        rows = [json.loads(line) for line in (run / "data" / "rotten_tomatoes" / f"{split}.jsonl").read_text()
                .splitlines()]
        (folder / f"{split}.json").write_text(json.dumps(rows, indent=2))
    splits = load_splits(TASKS.get("rotten_tomatoes"), folder)
    assert splits["train"] == [json.loads(line) for line in (run / "data" / "rotten_tomatoes" / "train.jsonl")
                               .read_text().splitlines()]


def test_a_json_array_of_non_objects_and_a_single_saved_dataset_are_one_line_errors(run, tmp_path, capsys):
    import datasets

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.json").write_text('[{"text": "a", "label": 0}, 3]')
    (bad / "validation.json").write_text('[{"text": "a", "label": 0}]')
    single = tmp_path / "single"
    datasets.Dataset.from_list([{"text": "good", "label": 1}, {"text": "bad", "label": 0}]).save_to_disk(single)
    capsys.readouterr()  # datasets' progress bar
    for folder, message in ((bad, "item 2 of the JSON array is not an object"),
                            (single, "holds one `datasets.Dataset` with no splits: save a DatasetDict")):
        assert main(["eval", "--model", str(run / "out" / "best"), "--data-dir", str(folder), "--num-eval", "1"]) == 2
        expect_one_line_error(capsys, message)


# --- outputs that fit the hub -------------------------------------------------------------------------------


def test_a_run_writes_final_and_hub_metadata_in_its_cards(run):
    from huggingface_hub import ModelCard

    out = run / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "final" / "model.safetensors").is_file() and summary["files"]["final"].endswith("out/final")
    final = load_file(str(out / "final" / "model.safetensors"))
    trained = load_file(str(out / "checkpoint" / "weights.safetensors"))
    assert all(torch.equal(final[name], tensor) for name, tensor in trained.items())
    card = ModelCard.load(out / "best" / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "transformers" and "base_model" not in meta  # a local folder has no hub id
    assert {"zotune", "zeroth-order", "mezo"} <= set(meta["tags"])
    (result,) = card.data.eval_results
    assert result.metric_type == "accuracy" and result.metric_value == round(summary["final"]["eval_score"], 4)
    assert "the final weights (step 3)" in (out / "final" / "README.md").read_text()


def test_an_adapters_card_and_config_name_its_base_as_the_hub_or_an_absolute_path(run, tiny_model_dir, monkeypatch):
    import os

    from huggingface_hub import ModelCard

    from zotune.train.card import hub_base_model

    monkeypatch.chdir(tiny_model_dir.parent)
    relative = os.path.relpath(tiny_model_dir)
    out = run / "lora"
    assert main(train_args(relative, run / "data", out, "--peft", "lora", "--lora-targets", "q_proj,v_proj")) == 0
    config = json.loads((out / "best" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert ModelCard.load(out / "best" / "README.md").data.library_name == "peft"
    assert hub_base_model("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_base_model("Org/model") == "Org/model"


def test_push_uploads_a_model_folder_through_huggingface_hub(run, capsys, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs["private"]))

        def upload_folder(self, **kwargs):
            calls.append(("upload", kwargs["repo_id"], kwargs["folder_path"]))
            return type("Commit", (), {"commit_url": "https://huggingface.co/me/x/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert main(["push", str(run / "out" / "best"), "me/x", "--private"]) == 0
    assert calls == [("create", "me/x", True), ("upload", "me/x", str(run / "out" / "best"))]
    assert "https://huggingface.co/me/x/commit/1" in capsys.readouterr().out
    assert main(["push", str(run / "data"), "me/x"]) == 2
    expect_one_line_error(capsys, "is not a model folder")

    class Offline(FakeApi):
        def create_repo(self, repo_id, **kwargs):
            raise OSError("Network is unreachable")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    assert main(["push", str(run / "out" / "best"), "me/x"]) == 2
    expect_one_line_error(capsys, "Could not push")
