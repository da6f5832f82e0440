import json

import pytest
import torch

from zotune.errors import DataError
from zotune.tasks import TASKS, candidate_scores, encode, load_splits, read_rows, sample_splits
from zotune.tasks.scoring import Encoded


@pytest.mark.parametrize("name,row,prompt", [
    ("sst2", {"sentence": "a gripping tale ", "label": 1}, "a gripping tale It was"),
    ("rotten_tomatoes", {"text": "Dull.", "label": 0}, "Dull. It was"),
])
def test_templates_render_mezo_prompts(name, row, prompt):
    task = TASKS.get(name)
    assert task.prompt(row) == prompt
    assert task.candidates(row) == (" terrible", " great")


@pytest.mark.parametrize("name", ["sst2", "rotten_tomatoes"])
def test_every_verbaliser_has_exactly_one_leading_space(name):
    for text in TASKS.get(name).verbalizers:
        assert text.startswith(" ") and not text.startswith("  ") and text.strip()


@pytest.mark.parametrize("label,pattern", [(2, "not among the candidates"), ("1", "not an integer"),
                                           (True, "not an integer"), (None, "not an integer")])
def test_bad_labels_are_data_errors(label, pattern):
    with pytest.raises(DataError, match=pattern):
        TASKS.get("sst2").label({"sentence": "x", "label": label})


def test_read_rows_errors(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"text": "ok", "label": 1}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"train.jsonl:2: malformed JSON"):
        read_rows(bad)
    bad.write_text("")
    with pytest.raises(DataError, match="no rows"):
        read_rows(bad)
    bad.write_bytes(b'{"text": "\xff\xfe", "label": 1}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        read_rows(bad)
    bad.write_text("[1, 2]\n")
    with pytest.raises(DataError, match="a JSON list, not an object"):
        read_rows(bad)


def test_csv_rows_get_integer_labels(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"good, really",1\nbad,0\n')
    assert read_rows(path) == [{"text": "good, really", "label": 1}, {"text": "bad", "label": 0}]


def test_load_splits_checks_fields_and_names_the_file(tmp_path):
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"text": "x", "label": 1}) + "\n")
    (folder / "validation.jsonl").write_text(json.dumps({"sentence": "x", "label": 1}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl: row 1 lacks field\(s\) \['sentence'\]"):
        load_splits(TASKS.get("sst2"), tmp_path)
    with pytest.raises(DataError, match="Data directory not found"):
        load_splits(TASKS.get("sst2"), tmp_path / "nope")
    (folder / "validation.jsonl").unlink()
    (folder / "train.jsonl").write_text(json.dumps({"sentence": "x", "label": 1}) + "\n")
    with pytest.raises(DataError, match="No validation.jsonl"):
        load_splits(TASKS.get("sst2"), tmp_path)


def test_mezo_sampling_is_disjoint_and_seeded():
    splits = {"train": [{"i": i} for i in range(100)], "validation": [{"j": j} for j in range(50)]}
    a = sample_splits(splits, num_train=30, num_dev=20, num_eval=10, seed=3)
    b = sample_splits(splits, num_train=30, num_dev=20, num_eval=10, seed=3)
    c = sample_splits(splits, num_train=30, num_dev=20, num_eval=10, seed=4)
    assert a == b and a != c
    assert len(a.train) == 30 and len(a.dev) == 20 and len(a.eval) == 10
    assert not {r["i"] for r in a.train} & {r["i"] for r in a.dev}


def test_the_former_name_sample_mezo_still_samples_with_a_deprecation_warning():
    from zotune.tasks import sample_mezo

    splits = {"train": [{"i": i} for i in range(100)], "validation": [{"j": j} for j in range(50)]}
    with pytest.warns(FutureWarning, match="now sample_splits"):
        old = sample_mezo(splits, num_train=30, num_dev=20, num_eval=10, seed=3)
    assert old == sample_splits(splits, num_train=30, num_dev=20, num_eval=10, seed=3)


def test_mezo_sampling_cuts_oversized_requests_with_a_warning():
    splits = {"train": [{"i": i} for i in range(10)], "validation": [{"j": 0}]}
    with pytest.warns(UserWarning, match="the train split has 10; using all of it: 8 train \\+ 2 dev"):
        data = sample_splits(splits, num_train=100, num_dev=50, num_eval=1, seed=0)
    assert len(data.train) == 8 and len(data.dev) == 2


def test_long_prompts_are_cut_from_the_left(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    row = {"text": "great " * 50 + "cast indeed", "label": 1}
    (ex,) = encode(TASKS.get("rotten_tomatoes"), [row], tokenizer, max_length=10)
    assert len(ex.prompt) + 1 <= 10
    assert tokenizer.decode(ex.prompt).endswith("cast indeed It was")


def test_padding_does_not_change_scores(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    rows = [{"text": "great", "label": 1}, {"text": "a dull and terrible story overall .", "label": 0}]
    examples = encode(TASKS.get("rotten_tomatoes"), rows, tokenizer)
    together = candidate_scores(model, examples, tokenizer.pad_token_id)
    alone = torch.cat([candidate_scores(model, [ex], tokenizer.pad_token_id) for ex in examples])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_multi_token_candidates_score_their_mean_log_likelihood(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    (ex,) = encode(TASKS.get("rotten_tomatoes"), [{"text": "a great cast", "label": 1}], tokenizer)
    single = candidate_scores(model, [ex], tokenizer.pad_token_id)[0]
    # Move the prompt's last token into each candidate: the score becomes the mean of two log-likelihoods.
    shifted = Encoded(ex.prompt[:-1], tuple((ex.prompt[-1],) + c for c in ex.candidates), ex.label)
    double = candidate_scores(model, [shifted], tokenizer.pad_token_id)[0]
    with torch.no_grad():
        logits = model(torch.tensor([ex.prompt[:-1]])).logits[0, -1].log_softmax(-1)
    torch.testing.assert_close(2 * double, single + logits[ex.prompt[-1]], rtol=1e-4, atol=1e-4)
