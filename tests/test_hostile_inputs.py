"""Hostile inputs: each gives one line `zotune: error: ...`, exit code 2, and leaves what was written intact.

Every case runs against an output folder that already holds a finished run; after the failure, every file in it
must be byte-for-byte what it was.
"""

import errno
import json
import os
from pathlib import Path

import pytest

from hostile import TRAIN_FILE, expect_one_line_error, rerun_args, snapshot, train_args
from zotune.cli import main
from zotune.errors import ZotuneWarning

DATA_CASES = {
    "truncated_data_file": (b'{"text": "good", "label": 1}\n{"text": "bad", "lab', "train.jsonl:2: malformed JSON"),
    "non_utf8_data_file": (b'{"text": "caf\xe9", "label": 1}\n', "not UTF-8 text"),
    "empty_data_file": (b"", "train.jsonl: no rows"),
    "wrong_field_names": (b'{"sentence": "good", "label": 1}\n', "lacks field(s) ['text']"),
    "label_out_of_range": (b'{"text": "good", "label": 7}\n', "label 7 is not among the candidates"),
    "label_not_an_integer": (b'{"text": "good", "label": "positive"}\n', "label 'positive' is not an integer"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_malformed_data_files(case, run, tiny_model_dir, capsys):
    content, pattern = DATA_CASES[case]
    (run / TRAIN_FILE).write_bytes(content)
    before = snapshot(run / "out")
    assert main(rerun_args(tiny_model_dir, run / "data", run / "out")) == 2
    expect_one_line_error(capsys, pattern)
    assert snapshot(run / "out") == before


CONFIG_CASES = {
    "unknown_keys": ("learning_rate: 0.1\nwarmup: 3\n", "Unknown config key(s) ['learning_rate', 'warmup']"),
    "wrong_type": ("steps: many\n", "Invalid steps: 'many' (must be an integer >= 1)"),
    "wrong_option_type": ("method: ldsd\nmethod_options: {sigma: abc}\n", "Invalid sigma: 'abc'"),
    "not_a_mapping": ("- steps\n- 3\n", "expected a mapping of settings"),
    "invalid_yaml": ("steps: [3\n", "invalid YAML"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_files(case, run, tiny_model_dir, capsys):
    text, pattern = CONFIG_CASES[case]
    (run / "config.yaml").write_text(text)
    before = snapshot(run / "out")
    args = rerun_args(tiny_model_dir, run / "data", run / "out")
    at = args.index("--steps")
    args = args[:at] + args[at + 2:] + ["--config", str(run / "config.yaml")]  # --steps would override the file
    assert main(args) == 2
    expect_one_line_error(capsys, pattern)
    assert snapshot(run / "out") == before


def test_a_candidate_that_leaves_no_room_for_the_prompt(run, tiny_model_dir, capsys):
    before = snapshot(run / "out")
    assert main(rerun_args(tiny_model_dir, run / "data", run / "out", "--max-length", "1")) == 2
    expect_one_line_error(capsys, "leaves no room for the prompt in max_length 1")
    assert snapshot(run / "out") == before


def test_prompts_longer_than_the_context_are_cut_to_it_with_a_warning(run, tiny_model_dir):
    long_row = json.dumps({"text": " ".join(["good"] * 600), "label": 1})
    (run / TRAIN_FILE).write_text((long_row + "\n") * 40)
    args = train_args(tiny_model_dir, run / "data", run / "new", "--max-length", "100000")
    with pytest.warns(ZotuneWarning, match="exceeds the model's context of 256 tokens; using 256"):
        assert main(args) == 0


@pytest.mark.parametrize("damage", ["garbage_weights", "truncated_optimizer", "bad_loop_state"])
def test_a_corrupt_checkpoint(damage, run, tiny_model_dir, capsys):
    folder = run / "out" / "checkpoint"
    if damage == "garbage_weights":
        (folder / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    elif damage == "truncated_optimizer":
        data = (folder / "optimizer.pt").read_bytes()
        (folder / "optimizer.pt").write_bytes(data[: len(data) // 2])
    else:
        (folder / "loop_state.json").write_text('{"step": ')
    before = snapshot(run / "out")
    assert main(train_args(tiny_model_dir, run / "data", run / "out", "--steps", "6", "--resume")) == 2
    expect_one_line_error(capsys, f"Corrupt checkpoint in {folder}")
    assert snapshot(run / "out") == before


@pytest.mark.parametrize("damage,pattern", [
    ("garbage_line", "seeds.jsonl:2: corrupt seed log line"),
    ("missing_field", "seeds.jsonl:2: corrupt seed log line (bad or missing 'seed')"),
    ("no_header", "is not a zotune seed log"),
    ("edited_lr", "seeds.jsonl:3: step 1 line was changed after it was written (checksum mismatch)"),
    ("missing_file", "Cannot read seed log"),
])
def test_a_corrupt_seed_log(damage, pattern, run, capsys):
    log = run / "out" / "seeds.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    if damage == "garbage_line":
        lines[1] = "\x00\x01 not json\n"
    elif damage == "missing_field":  # in a log without checksums (older zotune), or the checksum would report it
        lines = [json.dumps({k: v for k, v in json.loads(line).items() if k != "check"}) + "\n" for line in lines]
        step = json.loads(lines[1])
        del step["seed"]
        lines[1] = json.dumps(step) + "\n"
    elif damage == "edited_lr":
        step = json.loads(lines[2])
        step["lr"] *= 2
        lines[2] = json.dumps(step) + "\n"
    elif damage == "no_header":
        lines = lines[1:]
    log.write_text("".join(lines))
    if damage == "missing_file":
        log.unlink()
    assert main(["replay", "--log", str(log), "--out", str(run / "rebuilt"), "--no-progress"]) == 2
    expect_one_line_error(capsys, pattern)
    assert not (run / "rebuilt").exists() or not any((run / "rebuilt").iterdir())


def test_an_output_directory_that_is_a_file(run, tiny_model_dir, capsys):
    (run / "a-file").write_text("x")
    assert main(train_args(tiny_model_dir, run / "data", run / "a-file" / "out")) == 2
    expect_one_line_error(capsys, "is not writable")


def test_a_read_only_output_directory(run, tiny_model_dir, capsys, monkeypatch):
    out = run / "out"
    before = snapshot(out)
    if os.geteuid() == 0:  # root ignores permission bits: refuse the write the way a read-only folder would
        real_open = os.open

        def read_only_open(path, flags, *args):
            if Path(path).parent == out and flags & (os.O_WRONLY | os.O_RDWR):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", read_only_open)
    else:
        out.chmod(0o555)
    try:
        assert main(train_args(tiny_model_dir, run / "data", out, "--steps", "6", "--resume")) == 2
    finally:
        out.chmod(0o755)
    expect_one_line_error(capsys, f"Output directory {out} is not writable (Permission denied)")
    monkeypatch.undo()
    assert snapshot(out) == before


def test_a_full_disk_while_saving_a_checkpoint(run, tiny_model_dir, capsys, monkeypatch):
    import zotune.train.checkpoint as checkpoint

    out = run / "out"
    before = snapshot(out / "checkpoint")
    real_save = checkpoint.save_file

    def disk_full(tensors, path, *args, **kwargs):
        Path(path).write_bytes(b"\x00" * 100)  # the bytes that fitted
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    assert main(train_args(tiny_model_dir, run / "data", out, "--steps", "6", "--resume")) == 2
    expect_one_line_error(capsys, "No space left on device")
    assert snapshot(out / "checkpoint") == before
    assert not (out / "checkpoint.partial").exists()
    # Once there is room again, the run resumes from the intact checkpoint and finishes.
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    assert main(train_args(tiny_model_dir, run / "data", out, "--steps", "6", "--resume")) == 0
    assert json.loads((out / "checkpoint" / "loop_state.json").read_text())["step"] == 6


# --- second pass (docs/reliability.md): valid data kept whole, absurd values refused, every file bounded -------


def test_json_strings_with_unicode_line_separators_are_read_whole(tmp_path):
    from zotune.tasks.data import read_rows

    texts = ["a\u2028b", "c\u2029d", "e\u0085f", "g\x1ch\x1di\x1ej", "crlf"]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": 1}, ensure_ascii=False) + "\r\n" for t in texts),
                    encoding="utf-8", newline="")
    assert [row["text"] for row in read_rows(path)] == texts


def test_a_quoted_csv_field_keeps_its_newline(tmp_path):
    from zotune.tasks.data import read_rows

    path = tmp_path / "rows.csv"
    path.write_text('text,label\n"great\nfilm",1\n"plain",0\n', encoding="utf-8")
    assert read_rows(path) == [{"text": "great\nfilm", "label": 1}, {"text": "plain", "label": 0}]


@pytest.mark.parametrize("value", [None, 3, ["a", "b"]], ids=["null", "number", "list"])
def test_a_text_field_that_is_not_text_is_refused(value, run, tiny_model_dir, capsys):
    (run / TRAIN_FILE).write_text(json.dumps({"text": value, "label": 1}) + "\n")
    before = snapshot(run / "out")
    assert main(rerun_args(tiny_model_dir, run / "data", run / "out")) == 2
    expect_one_line_error(capsys, "field 'text' is")
    assert snapshot(run / "out") == before


def _edit_seed_log(log: Path, line: int, edit) -> None:
    # As an older log without checksums (on any line): the checks below must hold by themselves.
    lines = [json.dumps({k: v for k, v in json.loads(text).items() if k != "check"})
             for text in log.read_text().splitlines()]
    value = json.loads(lines[line])
    edit(value)
    lines[line] = json.dumps(value)
    log.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("line,edit,pattern", [  # line 1 is the first step, line 0 the header
    (1, lambda v: v.update(plan=[[0, 10**12, 1.0]]), "more blocks than the model's"),
    (1, lambda v: v.update(plan=[[-5, 2, 1.0]]), "more blocks than the model's"),
    (1, lambda v: v.update(seed=2**70), "corrupt seed log line"),
    (1, lambda v: v.update(lr="0.1"), "corrupt seed log line"),
    (0, lambda h: h.pop("base_sha256"), "header fields missing ['base_sha256']"),
    (0, lambda h: h.update(extra=1), "unknown ['extra']"),
    (0, lambda h: h["optimizer"].update(learning_rate=1), "optimizer settings unknown ['learning_rate']"),
    (0, lambda h: h.update(dtype=3), "header field dtype is 3"),
], ids=["huge_plan", "negative_plan", "huge_seed", "string_lr", "header_missing_key", "header_extra_key",
        "header_unknown_setting", "header_wrong_type"])
def test_a_seed_log_cannot_describe_more_than_the_model_nor_hold_unknown_fields(line, edit, pattern, run, capsys):
    log = run / "out" / "seeds.jsonl"
    _edit_seed_log(log, line, edit)
    assert main(["replay", "--log", str(log), "--out", str(run / "re"), "--no-progress"]) == 2
    expect_one_line_error(capsys, pattern)


@pytest.mark.parametrize("flags,pattern", [
    (["--seed", str(2**64)], "Invalid seed"), (["--threads", "-1"], "Invalid threads"),
    (["--weight-decay", "inf"], "Invalid weight_decay: inf"), (["--max-seconds", "nan"], "Invalid max_seconds"),
    (["--lr", "inf"], "Invalid lr: inf"), (["--data-seed", "-1"], "Invalid data_seed"),
])
def test_absurd_training_values_are_refused(flags, pattern, run, tiny_model_dir, capsys):
    before = snapshot(run / "out")
    assert main(rerun_args(tiny_model_dir, run / "data", run / "out", *flags)) == 2
    expect_one_line_error(capsys, pattern)
    assert snapshot(run / "out") == before


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--batch-size", "-1"], ["--num-eval", "0"],
                                   ["--split", "dev", "--num-dev", "0"]])
def test_absurd_eval_values_are_refused(flags, run, tiny_model_dir, capsys):
    assert main(["eval", "--model", str(tiny_model_dir), "--data-dir", str(run / "data"), *flags]) == 2
    expect_one_line_error(capsys, "Invalid --")


@pytest.mark.parametrize("flags,pattern", [(["--eps", "inf"], "Invalid eps: inf"),
                                           (["--threads", "0"], "Invalid threads")])
def test_absurd_meta_training_values_are_refused(flags, pattern, run, tiny_model_dir, capsys):
    assert main(["meta-train", "--model", str(tiny_model_dir), "--data-dir", str(run / "data"),
                 "--output-dir", str(run / "meta"), *flags]) == 2
    expect_one_line_error(capsys, pattern)


@pytest.mark.parametrize("damage,pattern", [
    ("metrics", "metrics.jsonl:2: corrupt line"),
    ("loop_state_shape", "loop_state.json: step is '3'"),
    ("loop_state_list", "loop_state.json is not a JSON object"),
])
def test_resume_from_damaged_files_is_one_line_error(damage, pattern, run, tiny_model_dir, capsys):
    out = run / "out"
    if damage == "metrics":
        lines = (out / "metrics.jsonl").read_text().splitlines()
        lines[1] = "\x00\x00{not json"
        (out / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    elif damage == "loop_state_shape":
        state = json.loads((out / "checkpoint" / "loop_state.json").read_text())
        state["step"] = "3"
        (out / "checkpoint" / "loop_state.json").write_text(json.dumps(state))
    else:
        (out / "checkpoint" / "loop_state.json").write_text("[1, 2]")
    before = snapshot(out)
    assert main(train_args(tiny_model_dir, run / "data", out, "--steps", "6", "--resume")) == 2
    expect_one_line_error(capsys, pattern)
    assert snapshot(out) == before
