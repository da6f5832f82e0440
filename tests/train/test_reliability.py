"""Seed log and replay, crash safety (real SIGKILL/SIGTERM of a child process), and signals."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from zotune.cli import main
from zotune.errors import StateError
from zotune.train.config import TrainConfig
from zotune.train.loop import train
from zotune.train.replay import replay
from zotune.train.seedlog import _dump, read_seed_log, weights_sha256


def _config(model_dir, data_dir, out, **overrides):
    values = dict(model=str(model_dir), data_dir=str(data_dir), output_dir=str(out), steps=6, lr=2e-3, eps=1e-2,
                  batch_size=8, num_train=48, num_dev=16, num_eval=24, eval_steps=3, eval_batch_size=16,
                  max_length=128)
    values.update(overrides)
    return TrainConfig(**values)


def _final_weights(out):
    return load_file(str(out / "checkpoint" / "weights.safetensors"))


def _base_model(model_dir, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()


REPLAYED = [
    ("mezo", {}, "sgd", 1),
    ("mezo", {"noise": "rademacher"}, "sgd", 2),
    ("mezo", {"noise": "gaussian16"}, "sgd", 1),
    ("mezo", {}, "adam", 2),
    ("mezo", {}, "cons", 1),
    ("adalezo", {}, "sgd", 1),
    ("dizo", {"interval": 2, "probes": 2}, "sgd", 1),
    ("ldsd", {"candidates": 3, "lr_mu": 1e-2}, "sgd", 1),
]


@pytest.mark.parametrize("method,options,update,n", REPLAYED, ids=[f"{m}-{u}-n{n}" + "".join(o.get("noise", "")[:4] for o in [opts])
                              for m, opts, u, n in REPLAYED])
def test_replay_rebuilds_the_trained_weights_bitwise(method, options, update, n, tiny_model_dir, tiny_data_dir,
                                                     tmp_path):
    noise = options.get("noise", "gaussian")  # an optimizer argument, not a method option
    options = {k: v for k, v in options.items() if k != "noise"}
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, method=method, method_options=options, update=update,
                  n_directions=n, noise=noise), progress=False)
    trained = _final_weights(tmp_path)
    log = read_seed_log(tmp_path / "seeds.jsonl")
    assert len(log.steps) == 6 and log.end["steps"] == 6
    model = _base_model(tiny_model_dir)
    result = replay(log, model)
    assert result.matches_log is True
    for name, param in model.named_parameters():
        assert torch.equal(param, trained[name]), name


def test_replay_in_bf16_with_deferred_perturbation(tiny_model_dir, tiny_data_dir, tmp_path):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, dtype="bfloat16"), progress=False)
    log = read_seed_log(tmp_path / "seeds.jsonl")
    assert log.header["optimizer"]["perturbation"] == "deferred"
    model = _base_model(tiny_model_dir, torch.bfloat16)
    assert replay(log, model).matches_log is True


def test_the_seed_log_records_adalezo_draws_and_replays_a_prefix(tiny_model_dir, tiny_data_dir, tmp_path):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, method="adalezo"), progress=False)
    log = read_seed_log(tmp_path / "seeds.jsonl")
    assert all(r.plan is not None and len(r.plan[0]) == len(r.plan[1]) for r in log.steps)
    model = _base_model(tiny_model_dir)
    result = replay(log, model, steps=3)
    assert result.steps == 3 and result.matches_log is None
    # The checkpoint at step 3 was overwritten; replaying 3 then 6 steps must differ.
    assert result.sha256 != log.end["sha256"]


def test_replay_refuses_another_base_model_and_a_log_that_does_not_fit(tiny_model_dir, tiny_data_dir, tmp_path):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=3), progress=False)
    log = read_seed_log(tmp_path / "seeds.jsonl")
    other = _base_model(tiny_model_dir)
    with torch.no_grad():
        other.model.norm.weight.add_(1.0)
    with pytest.raises(StateError, match="base model's weights differ"):
        replay(log, other)
    log.steps[1].seed += 1
    with pytest.raises(StateError, match="step 1 does not replay"):
        replay(log, _base_model(tiny_model_dir))


def test_a_seed_log_is_small(tiny_model_dir, tiny_data_dir, tmp_path):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=30, eval_steps=30), progress=False)
    log = read_seed_log(tmp_path / "seeds.jsonl")
    assert log.bytes_per_step < 200  # seed, lr, two losses, one gradient


def test_zotune_replay_cli_writes_a_loadable_model_equal_to_the_trained_one(tiny_model_dir, tiny_data_dir,
                                                                           tmp_path, capsys):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path / "run"), progress=False)
    code = main(["replay", "--log", str(tmp_path / "run" / "seeds.jsonl"), "--out", str(tmp_path / "rebuilt"),
                 "--no-progress"])
    assert code == 0
    assert "bitwise equal to the trained weights" in capsys.readouterr().out
    rebuilt = _base_model(tmp_path / "rebuilt")
    trained = _final_weights(tmp_path / "run")
    assert weights_sha256((n, p) for n, p in rebuilt.named_parameters()) == weights_sha256(
        (n, trained[n]) for n, _ in rebuilt.named_parameters())


def test_resume_truncates_the_seed_log_to_the_checkpoint(tiny_model_dir, tiny_data_dir, tmp_path):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=3), progress=False)
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))  # as if killed: no end line
    with open(path, "a") as fh:  # steps a killed run logged after its last checkpoint, and a torn line
        fh.write(_dump({"step": 3, "seed": 1, "lr": 0.1, "losses": [1.0, 2.0], "grads": [0.0]}))
        fh.write('{"step": 4, "se')
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=6, resume=True), progress=False)
    log = read_seed_log(path)
    assert [r.step for r in log.steps] == list(range(6))
    assert replay(log, _base_model(tiny_model_dir)).matches_log is True


def _as_before_counter_gaussian(out):
    """Make ``out``'s run (made with noise torch-gaussian) look as zotune left it before seed log version 2, when
    ``gaussian`` named torch's generator: a version 1 log, a fingerprint and an optimizer state without the name."""
    from zotune.train.loop import fingerprint_sha256

    loop = json.loads((out / "checkpoint" / "loop_state.json").read_text())
    loop["fingerprint"]["settings"]["noise"] = "gaussian"
    del loop["fingerprint"]["zotune_version"]
    (out / "checkpoint" / "loop_state.json").write_text(json.dumps(loop))
    path = out / "seeds.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("check")
    lines[0].update(version=1, optimizer={**lines[0]["optimizer"], "noise": "gaussian"},
                    fingerprint=fingerprint_sha256(loop["fingerprint"]))
    path.write_text("".join(_dump(line) for line in lines))
    state = torch.load(out / "checkpoint" / "optimizer.pt", weights_only=True)
    del state["zo"]["noise"]
    torch.save(state, out / "checkpoint" / "optimizer.pt")


def test_runs_from_before_the_counter_gaussian_replay_and_resume_with_torchs_generator(tiny_model_dir, tiny_data_dir,
                                                                                        tmp_path):
    whole = tmp_path / "whole"
    train(_config(tiny_model_dir, tiny_data_dir, whole, noise="torch-gaussian"), progress=False)
    old = tmp_path / "old"
    train(_config(tiny_model_dir, tiny_data_dir, old, steps=3, noise="torch-gaussian"), progress=False)
    _as_before_counter_gaussian(old)
    log = read_seed_log(old / "seeds.jsonl")
    assert log.header["optimizer"]["noise"] == "torch-gaussian"
    assert replay(log, _base_model(tiny_model_dir)).matches_log is True
    with pytest.warns(UserWarning, match="goes on with the stream it started with, torch-gaussian"):
        train(_config(tiny_model_dir, tiny_data_dir, old, steps=6, resume=True), progress=False)
    for name, tensor in _final_weights(whole).items():
        assert torch.equal(_final_weights(old)[name], tensor), name
    assert replay(read_seed_log(old / "seeds.jsonl"), _base_model(tiny_model_dir)).matches_log is True
    assert json.loads((old / "summary.json").read_text())["config"]["noise"] == "torch-gaussian"


def _small_run(steps, state=None, **noise):
    """A two-layer model trained ``steps`` steps by a ZOOptimizer (``noise=...``, or the default), from ``state``
    (model and optimizer state dicts) when given: the model and the optimizer."""
    from zotune import ZOOptimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    data = torch.linspace(-1, 1, 32).view(8, 4)
    opt = ZOOptimizer(model, lr=1e-2, eps=1e-3, seed=2, **noise)
    if state is not None:
        model.load_state_dict(state[0])
        opt.load_state_dict(state[1])
    for _ in range(steps):
        opt.step(lambda: model(data).pow(2).mean())
    return model, opt


def test_an_optimizer_state_from_before_the_counter_gaussian_goes_on_with_torchs_generator():
    whole, _ = _small_run(4, noise="torch-gaussian")
    half, opt = _small_run(2, noise="torch-gaussian")
    saved = opt.state_dict()
    del saved["zo"]["noise"]  # as states were saved before they recorded it
    with pytest.warns(UserWarning, match="goes on with the stream it started with, torch-gaussian"):
        resumed, opt = _small_run(2, (half.state_dict(), saved), noise="gaussian")
    assert opt.settings["noise"] == "torch-gaussian"
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), resumed.parameters()))
    with pytest.raises(StateError, match="noise='rademacher'"):
        _small_run(0, (half.state_dict(), {**saved, "zo": {**saved["zo"], "noise": "rademacher"}}), noise="gaussian")


def test_a_run_made_under_the_earlier_default_resumes_with_its_stream(tiny_model_dir, tiny_data_dir, tmp_path):
    # Before zotune 0.3.0 the default noise was `gaussian`; a run that drew it resumes with it under the new default.
    whole = tmp_path / "whole"
    train(_config(tiny_model_dir, tiny_data_dir, whole, noise="gaussian"), progress=False)
    old = tmp_path / "old"
    train(_config(tiny_model_dir, tiny_data_dir, old, steps=3, noise="gaussian"), progress=False)
    with pytest.warns(UserWarning, match="not from this zotune's default `gaussian16`: it goes on with the stream it "
                                         "started with, gaussian"):
        train(_config(tiny_model_dir, tiny_data_dir, old, steps=6, resume=True), progress=False)
    for name, tensor in _final_weights(whole).items():
        assert torch.equal(_final_weights(old)[name], tensor), name
    assert json.loads((old / "summary.json").read_text())["config"]["noise"] == "gaussian"
    assert replay(read_seed_log(old / "seeds.jsonl"), _base_model(tiny_model_dir)).matches_log is True


def test_an_optimizer_state_of_the_earlier_default_goes_on_with_it_only_under_the_default():
    whole, _ = _small_run(4, noise="gaussian")
    half, opt = _small_run(2, noise="gaussian")
    with pytest.warns(UserWarning, match="goes on with the stream it started with, gaussian"):
        resumed, opt = _small_run(2, (half.state_dict(), opt.state_dict()))  # the default noise, gaussian16
    assert opt.settings["noise"] == "gaussian"
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), resumed.parameters()))
    with pytest.raises(StateError, match="build it with noise='gaussian'"):
        _small_run(0, (half.state_dict(), opt.state_dict()), noise="rademacher")  # a choice, not the default: refused


def test_gaussian_and_torch_gaussian_are_different_streams(tiny_model_dir, tiny_data_dir, tmp_path):
    for noise in ("gaussian", "torch-gaussian"):
        train(_config(tiny_model_dir, tiny_data_dir, tmp_path / noise, steps=2, noise=noise), progress=False)
    log = read_seed_log(tmp_path / "gaussian" / "seeds.jsonl")
    assert log.header["version"] == 2 and log.header["optimizer"]["noise"] == "gaussian"
    new, old = _final_weights(tmp_path / "gaussian"), _final_weights(tmp_path / "torch-gaussian")
    assert not all(torch.equal(new[name], old[name]) for name in new)


# --- crash safety with real signals --------------------------------------------------------------------------

def _child(model_dir, data_dir, out, *extra):
    args = ["--model", str(model_dir), "--data-dir", str(data_dir), "--output-dir", str(out), "--steps", "40",
            "--lr", "2e-3", "--eps", "1e-2", "--batch-size", "8", "--num-train", "48", "--num-dev", "8",
            "--num-eval", "8", "--eval-steps", "2", "--eval-batch-size", "16", "--max-length", "128",
            "--no-progress", *extra]
    code = f"import sys; from zotune.cli import main; sys.exit(main({['train', *args]!r}))"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_steps(out, count, proc, timeout=900):  # generous: a loaded machine is slow, not stuck
    deadline = time.monotonic() + timeout
    path = out / "seeds.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") > count:
            return
        time.sleep(0.005)
    raise AssertionError(f"child did not reach step {count} (exit {proc.poll()}): {proc.stderr.read()}")


def test_sigkill_at_any_moment_then_resume_ends_with_the_uninterrupted_weights(tiny_model_dir, tiny_data_dir,
                                                                               tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _child(tiny_model_dir, tiny_data_dir, straight).wait() == 0
    # Kill at several moments: mid-step, mid-evaluation and, with checkpoints every 2 steps, often mid-save.
    for kill_after in (3, 12, 21, 30):
        proc = _child(tiny_model_dir, tiny_data_dir, killed, "--resume")
        _wait_for_steps(killed, kill_after, proc)
        time.sleep((kill_after % 7) * 0.013)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _child(tiny_model_dir, tiny_data_dir, killed, "--resume").wait() == 0
    a, b = _final_weights(straight), _final_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_seed_log(killed / "seeds.jsonl").end["sha256"] == read_seed_log(straight / "seeds.jsonl").end["sha256"]
    losses = [[r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "train"] for out in (straight, killed)]
    assert losses[0] == losses[1]


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tiny_model_dir, tiny_data_dir, tmp_path):
    proc = _child(tiny_model_dir, tiny_data_dir, tmp_path, "--eval-steps", "100")
    _wait_for_steps(tmp_path, 5, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=900) == 128 + signal.SIGTERM
    stderr = proc.stderr.read().decode()
    assert "SIGTERM at step" in stderr and "Traceback" not in stderr
    state = json.loads((tmp_path / "checkpoint" / "loop_state.json").read_text())
    assert state["step"] >= 5
    assert len(read_seed_log(tmp_path / "seeds.jsonl").steps) == state["step"]


def test_a_crash_between_the_two_renames_of_a_checkpoint_save_resumes_from_the_previous_one(
        tiny_model_dir, tiny_data_dir, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    train(_config(tiny_model_dir, tiny_data_dir, straight), progress=False)
    train(_config(tiny_model_dir, tiny_data_dir, crashed, steps=3), progress=False)
    # The state replace_folder leaves when killed after "checkpoint -> checkpoint.old" and before the new folder
    # is renamed into place: no checkpoint/, the old one beside it, and a half-written new one.
    (crashed / "checkpoint").rename(crashed / "checkpoint.old")
    (crashed / "checkpoint.partial").mkdir()
    (crashed / "checkpoint.partial" / "weights.safetensors").write_bytes(b"half")
    train(_config(tiny_model_dir, tiny_data_dir, crashed, resume=True), progress=False)
    a, b = _final_weights(straight), _final_weights(crashed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (crashed / "checkpoint.old").exists() and not (crashed / "checkpoint.partial").exists()
