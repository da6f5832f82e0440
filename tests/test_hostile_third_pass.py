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
