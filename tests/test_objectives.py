"""Training on what is measured: --objective accuracy, f1, em (MeZO trains on non-differentiable objectives)."""

import json

import pytest
import torch

from hostile import expect_one_line_error, train_args
from zotune import ZOOptimizer
from zotune.cli import main
from zotune.tasks import TASKS, encode
from zotune.tasks.objectives import objective_fn
from zotune.tasks.scoring import generate_answers
from zotune.train.replay import replay
from zotune.train.seedlog import SeedLogWriter, read_seed_log


def test_an_objective_the_task_cannot_provide_is_refused(run, tiny_model_dir, capsys):
    assert main(train_args(tiny_model_dir, run / "data", run / "new", "--objective", "f1")) == 2
    expect_one_line_error(capsys, "Task 'rotten_tomatoes' (classification) has no f1 to train on: use --objective "
                                  "loss or accuracy")
    assert not (run / "new").exists()


def test_training_on_accuracy_logs_error_rates(run, tiny_model_dir):
    assert main(train_args(tiny_model_dir, run / "data", run / "acc", "--objective", "accuracy")) == 0
    losses = [x for step in read_seed_log(run / "acc" / "seeds.jsonl").steps for x in step.losses]
    assert losses and all(0 <= x <= 1 and (x * 8) == round(x * 8) for x in losses)  # 1 - k/8 on batches of 8
    assert json.loads((run / "acc" / "summary.json").read_text())["config"]["objective"] == "accuracy"


def test_the_smoothed_accuracy_tells_probes_apart_where_accuracy_ties(run, tiny_model_dir):
    assert main(train_args(tiny_model_dir, run / "data", run / "prob", "--objective", "probability")) == 0
    steps = read_seed_log(run / "prob" / "seeds.jsonl").steps
    assert all(0 < x < 1 for step in steps for x in step.losses)
    assert all(step.losses[0] != step.losses[1] for step in steps)  # a probability moves with every probe


def _qa_model_and_examples():
    from conftest import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    with torch.no_grad():
        model.model.embed_tokens.weight[:3] = 0  # [PAD] (its eos), [UNK], [BOS] score 0: words win the argmax
    task = TASKS.get("squad")
    rows = [{"title": "t", "context": f"a great film really {word}", "question": "what was it ?",
             "answers": {"text": ["x"], "answer_start": [0]}} for word in ("good", "bad", "fun", "dull")]
    decoded = generate_answers(model, encode(task, rows, tokenizer, max_length=64), tokenizer, 0)
    # Gold answers that the untrained model half gets right, so the F1 of a perturbed model can go either way.
    rows = [{**row, "answers": {"text": [" ".join(text.split()[:3])], "answer_start": [0]}}
            for row, text in zip(rows, decoded)]
    return model, tokenizer, task, encode(task, rows, tokenizer, max_length=64)


def test_f1_steps_change_the_weights_and_replay_bitwise(tmp_path):
    model, tokenizer, task, examples = _qa_model_and_examples()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    f1_error = objective_fn("f1", task, tokenizer, 0)
    opt = ZOOptimizer(model, lr=1e-2, eps=3e-3, seed=0)
    log = SeedLogWriter(tmp_path / "seeds.jsonl", opt, model, model_name="tiny", dtype="float32")
    for _ in range(3):
        opt.step(lambda: f1_error(model, examples))
        log.append(opt.last_record)
    log.finish(opt.step_count)
    steps = read_seed_log(tmp_path / "seeds.jsonl").steps
    assert all(0 <= x <= 1 for s in steps for x in s.losses)
    assert any(s.losses[0] != s.losses[1] for s in steps)  # F1 told the two probes apart at least once
    assert any(not torch.equal(p, base[n]) for n, p in model.named_parameters())
    fresh, _, _, _ = _qa_model_and_examples()
    assert replay(read_seed_log(tmp_path / "seeds.jsonl"), fresh).matches_log


@pytest.mark.parametrize("objective,kind", [("em", "generation"), ("accuracy", "multiple_choice")])
def test_objectives_fit_their_task_kinds(objective, kind):
    task = next(t for t in (TASKS.get(n) for n in TASKS.names()) if t.kind == kind)
    assert callable(objective_fn(objective, task, None, 0))
