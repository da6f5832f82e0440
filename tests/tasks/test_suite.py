"""The MeZO task suite: each template renders MeZO's prompt, QA metrics, multiple-choice and QA losses."""

import json

import pytest
import torch

from zotune.errors import DataError
from zotune.tasks import TASKS, candidate_scores, encode, evaluate, load_splits, task_loss
from zotune.tasks.qa import exact_match, f1_score, normalize_answer

ROWS = {
    "rte": ({"premise": "Cats sleep.", "hypothesis": "Cats rest.", "label": 0},
            'Cats sleep.\nDoes this mean that "Cats rest." is true? Yes or No?\n', ("Yes", "No"), 0),
    "cb": ({"premise": "It rained.", "hypothesis": "it was wet", "label": 2},
           'Suppose It rained. Can we infer that "it was wet"? Yes, No, or Maybe?\n', ("Yes", "No", "Maybe"), 2),
    "boolq": ({"passage": "Water boils at 100 C.", "question": "does water boil at 100 c", "label": 1},
              "Water boils at 100 C. does water boil at 100 c?", (" No", " Yes"), 1),
    "wsc": ({"text": "Mark told Pete a lie. He was angry.", "span1_text": "Mark", "span2_text": "He",
             "span1_index": 0, "span2_index": 5, "label": 0},
            'Mark told Pete a lie. He was angry.\nIn the previous sentence, does the pronoun "he" refer to Mark? '
            'Yes or No?\n', ("No", "Yes"), 0),
    "wic": ({"word": "place", "sentence1": "Come to my place.", "sentence2": "No place for them.", "label": 0},
            'Does the word "place" have the same meaning in these two sentences? Yes, No?\nCome to my place.\n'
            'No place for them.\n', ("No", "Yes"), 0),
    "multirc": ({"paragraph": "Sam ate.", "question": "Who ate?", "answer": "Sam", "label": 1},
                'Sam ate.\nQuestion: Who ate?\nI found this answer "Sam". Is that correct? Yes or No?\n',
                ("No", "Yes"), 1),
    "copa": ({"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.",
              "choice2": "I cut the grass.", "question": "cause", "label": 0},
             "My body cast a shadow over the grass because", (" the sun was rising.", " I cut the grass."), 0),
    "record": ({"passage": "Paris is big.\n@highlight\nIt is in France", "query": "@placeholder is a country.",
                "entities": ["Paris", "France"], "answers": ["France"]},
               "Paris is big.\n- It is in France\n", ("Paris is a country.", "France is a country."), 1),
    "squad": ({"title": "Moon", "context": "The Moon orbits Earth.", "question": "What does the Moon orbit?",
               "answers": {"text": ["Earth", "the Earth"], "answer_start": [16, 12]}},
              "Title: Moon\nContext: The Moon orbits Earth.\nQuestion: What does the Moon orbit?\nAnswer:",
              (" Earth",), 0),
    "drop": ({"passage": "Two goals, then three.", "question": "How many goals?",
              "answers_spans": {"spans": ["5"], "types": ["number"]}},
             "Passage: Two goals, then three.\nQuestion: How many goals?\nAnswer:", (" 5",), 0),
}


def test_all_eleven_mezo_tasks_are_registered():
    assert set(ROWS) | {"sst2"} <= set(TASKS.names())


@pytest.mark.parametrize("name", sorted(ROWS))
def test_template_renders_the_documented_prompt(name):
    row, prompt, candidates, label = ROWS[name]
    task = TASKS.get(name)
    assert task.prompt(row) == prompt
    assert task.candidates(row) == candidates
    assert task.label(row) == label


def test_copa_effect_uses_so():
    row = {"premise": "It rained.", "choice1": "Roads got wet.", "choice2": "X.", "question": "effect", "label": 0}
    assert TASKS.get("copa").prompt(row) == "It rained so"


def test_multiple_choice_label_out_of_range_is_a_data_error():
    row = dict(ROWS["copa"][0], label=2)
    with pytest.raises(DataError, match="among the row's 2 choices"):
        TASKS.get("copa").label(row)


def test_generation_row_without_answers_is_a_data_error():
    row = dict(ROWS["squad"][0], answers={"text": [], "answer_start": []})
    with pytest.raises(DataError, match="no gold answer"):
        TASKS.get("squad").candidates(row)


@pytest.mark.parametrize("text,normal", [("The  Eiffel Tower!", "eiffel tower"), ("an apple, a pear", "apple pear"),
                                         ("Theatre", "theatre")])
def test_squad_normalisation(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_and_f1_on_hand_made_answers():
    assert exact_match("the Earth.", ["Earth"]) == 1.0
    assert exact_match("Earth and Moon", ["Earth"]) == 0.0
    assert f1_score("Earth and Moon", ["Earth"]) == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert f1_score("blue whale", ["whale", "blue whale"]) == 1.0  # best over the gold answers
    assert f1_score("", ["x"]) == 0.0 and f1_score("the", ["a"]) == 1.0  # both normalise to nothing


def test_multiple_choice_loss_is_the_lm_loss_of_the_correct_candidate(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    task = TASKS.get("copa")
    rows = [dict(ROWS["copa"][0], label=label) for label in (0, 1)]
    batch = encode(task, rows, tokenizer)
    loss = task_loss(task, model, batch, tokenizer.pad_token_id)
    scores = candidate_scores(model, batch, tokenizer.pad_token_id)
    torch.testing.assert_close(loss, -(scores[0, 0] + scores[1, 1]) / 2)


def test_generation_evaluation_reports_em_and_f1(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    task = TASKS.get("squad")
    batch = encode(task, [ROWS["squad"][0]] * 3, tokenizer)
    assert batch[0].answers == ("Earth", "the Earth")
    result = evaluate(model, batch, tokenizer.pad_token_id, tokenizer=tokenizer, max_new_tokens=4)
    assert set(result) == {"em", "f1", "loss", "score"} and result["score"] == result["f1"]
    assert 0.0 <= result["em"] <= result["f1"] <= 1.0
    with pytest.raises(ValueError, match="needs the tokenizer"):
        evaluate(model, batch, tokenizer.pad_token_id)


def test_evaluation_batches_rows_with_different_numbers_of_choices(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    task = TASKS.get("record")
    three = dict(ROWS["record"][0], entities=["Paris", "France", "Rome"])
    batch = encode(task, [ROWS["record"][0], three, ROWS["record"][0]], tokenizer)
    result = evaluate(model, batch, tokenizer.pad_token_id, batch_size=8)
    assert result["score"] == result["accuracy"] and result["accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)


def test_a_folder_with_validation_only_is_split_in_two(tmp_path):
    folder = tmp_path / "boolq"
    folder.mkdir()
    rows = [dict(ROWS["boolq"][0], idx=i) for i in range(10)]
    (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(UserWarning, match="no train split"):
        splits = load_splits(TASKS.get("boolq"), tmp_path)
    assert len(splits["train"]) == 5 and len(splits["validation"]) == 5
    assert {r["idx"] for r in splits["train"]}.isdisjoint(r["idx"] for r in splits["validation"])
