"""Fuzzing the files zotune reads (docs/reliability.md, "Rules"): data rows, YAML run configs and seed-log lines.

Whatever the input, a command exits 0 or with the one-line error (exit 2): never a traceback or an internal
error, and it never changes the input file.
"""

import contextlib
import io
import json
import shutil

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zotune.cli import main

FUZZ = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.sampled_from([2**64, -2**70]),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)


def _run_cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    threads = torch.get_num_threads()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's usage error: exit 2 with its own message
            code = exc.code
    torch.set_num_threads(threads)  # a fuzzed `threads` must not slow the rest of the suite
    return code, err.getvalue()


def _assert_rules(code: int, err: str) -> None:
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith(("zotune: error:", "usage:", "zotune: "))]
        assert errors, err


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a fuzzed name that looks like a hub id fails at once
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


ROWS = st.one_of(
    st.builds(lambda text, label, extra: json.dumps({"text": text, "label": label, **extra}, ensure_ascii=False),
              st.one_of(st.text(max_size=40), JSON_VALUES), st.one_of(st.integers(-1, 2), JSON_VALUES),
              st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=2)),
    st.text(max_size=40),
)


@FUZZ
@given(rows=st.lists(ROWS, min_size=1, max_size=6))
def test_fuzzed_data_rows(rows, run, tiny_model_dir):
    train = run / "data" / "rotten_tomatoes" / "train.jsonl"
    content = ("\n".join(rows) + "\n").encode("utf-8", "surrogatepass")
    train.write_bytes(content)
    code, err = _run_cli(["eval", "--model", str(tiny_model_dir), "--data-dir", str(run / "data"),
                          "--num-eval", "4", "--num-train", "8", "--num-dev", "0"])
    _assert_rules(code, err)
    assert train.read_bytes() == content


CONFIG_KEYS = ["task", "method", "update", "sampler", "method_options", "peft", "lora_r", "prefix_tokens",
               "parallel", "max_forward_passes", "max_seconds", "lr", "eps", "n_directions", "directions",
               "weight_decay", "batch_size", "eval_batch_size", "seed", "data_seed", "num_train", "num_dev",
               "num_eval", "eval_steps", "log_steps", "max_length", "dtype", "max_nonfinite", "threads",
               "resume", "save_best", "learning_rate", "warmup"]


@FUZZ
@given(config=st.dictionaries(st.sampled_from(CONFIG_KEYS),
                              st.one_of(JSON_VALUES, st.sampled_from([float("nan"), float("inf"), "lora",
                                                                      "adalezo", "bfloat16", "rademacher"])),
                              max_size=4))
def test_fuzzed_yaml_configs(config, run, tiny_model_dir):
    path = run / "config.yaml"
    text = yaml.safe_dump(config, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    out = run / "fuzz-out"
    shutil.rmtree(out, ignore_errors=True)
    code, err = _run_cli(["train", "--config", str(path), "--model", str(tiny_model_dir), "--data-dir",
                          str(run / "data"), "--output-dir", str(out), "--steps", "1", "--no-progress"])
    _assert_rules(code, err)
    assert path.read_text(encoding="utf-8") == text


def _mutate(line: dict, key: str | None, value, mode: str, keep_check: bool) -> dict:
    line = dict(line)
    if not keep_check:
        line.pop("check", None)
    if key is None or mode == "add":
        line[key or "extra"] = value
    elif mode == "delete":
        line.pop(key, None)
    else:
        line[key] = value
    return line


@FUZZ
@given(index=st.integers(0, 4), mode=st.sampled_from(["set", "delete", "add", "raw"]),
       pick=st.integers(0, 20), value=JSON_VALUES, raw=st.text(max_size=30), keep_check=st.booleans())
def test_fuzzed_seed_log_lines(index, mode, pick, value, raw, keep_check, run, finished_run):
    log = run / "out" / "seeds.jsonl"  # `run` is shared by the examples: each starts from the finished run's log
    lines = (finished_run / "out" / "seeds.jsonl").read_text().splitlines()
    index = min(index, len(lines) - 1)
    if mode == "raw":
        lines[index] = raw.replace("\n", " ")
    else:
        original = json.loads(lines[index])
        keys = sorted(original)
        lines[index] = json.dumps(_mutate(original, keys[pick % len(keys)], value, mode, keep_check))
    content = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    log.write_bytes(content)
    out = run / "fuzz-replayed"
    code, err = _run_cli(["replay", "--log", str(log), "--out", str(out), "--overwrite", "--no-progress"])
    _assert_rules(code, err)
    assert log.read_bytes() == content
