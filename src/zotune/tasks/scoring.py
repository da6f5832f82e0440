"""Turning task rows into token ids, and scoring candidates with a causal LM.

A candidate's score is its mean per-token log-likelihood after the prompt (MeZO's inference rule). The
training loss is the cross-entropy over the candidates' scores. Logits are computed only where they are used
(``logits_to_keep``): for single-token verbalisers that is the last position alone, which skips the LM head on
every other position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from zotune.errors import DataError
from zotune.tasks.base import Task
from zotune.tasks.qa import exact_match, f1_score

__all__ = ["Encoded", "encode", "candidate_scores", "classification_loss", "task_loss", "accuracy", "evaluate",
           "generate_answers"]


@dataclass(frozen=True)
class Encoded:
    """One example as token ids: the prompt, each candidate's continuation, and the correct index."""

    prompt: tuple[int, ...]
    candidates: tuple[tuple[int, ...], ...]
    label: int
    answers: tuple[str, ...] = ()  # gold answers of a generation task, for EM/F1


def encode(task: Task, rows: Sequence[dict], tokenizer, *, max_length: int = 512) -> list[Encoded]:
    """Tokenise rows. Prompts longer than ``max_length`` minus the longest candidate are cut from the left,
    so the end of the prompt and the candidates always survive.

    Raises:
        DataError: a row lacks a field, has a bad label, or a candidate tokenises to nothing.
    """
    cache: dict[str, tuple[int, ...]] = {}
    out = []
    for i, row in enumerate(rows):
        try:
            prompt_text = task.prompt(row)
        except KeyError as exc:
            raise DataError(f"{task.name}: row {i + 1} lacks field {exc.args[0]!r}") from exc
        label = task.label(row)
        cands = []
        for text in task.candidates(row):
            if text not in cache:
                cache[text] = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
            if not cache[text]:
                raise DataError(f"{task.name}: candidate {text!r} tokenises to no tokens")
            cands.append(cache[text])
        texts = task.candidates(row)
        if task.kind == "classification" and len(set(cands)) < len(set(texts)):  # e.g. two label words that are both [UNK] to this tokenizer
            same = [t for t in dict.fromkeys(texts) if sum(cache[t] == cache[u] for u in dict.fromkeys(texts)) > 1]
            raise DataError(f"{task.name}: the candidates {', '.join(repr(t) for t in same)} tokenise to the same "
                            f"tokens {cache[same[0]]}: the model cannot tell them apart (choose other words)")
        prompt = tuple(tokenizer(prompt_text)["input_ids"])
        budget = max_length - max(len(c) for c in cands)
        if budget < 1:
            raise DataError(f"{task.name}: row {i + 1}: a candidate of {max(len(c) for c in cands)} tokens leaves "
                            f"no room for the prompt in max_length {max_length}")
        answers = task.gold_answers(row) if task.kind == "generation" else ()
        out.append(Encoded(prompt[-budget:] if len(prompt) > budget else prompt, tuple(cands), label, answers))
    return out


def _left_padded(seqs: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    # Real tokens start at position 0 whatever the padding.
    positions = (mask.cumsum(1) - 1).clamp_(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}


def candidate_scores(model, batch: Sequence[Encoded], pad_id: int, *, grad: bool = False) -> torch.Tensor:
    """Mean per-token log-likelihood of every candidate, shape ``[batch, num_candidates]`` (float32).

    Runs in inference mode unless ``grad`` (first-order steps, ZO Fine-tuner's meta-training).
    """
    with torch.inference_mode(not grad):
        return _candidate_scores(model, batch, pad_id)


def _candidate_scores(model, batch: Sequence[Encoded], pad_id: int) -> torch.Tensor:
    device = next(model.parameters()).device
    num_cands = len(batch[0].candidates)
    if any(len(ex.candidates) != num_cands for ex in batch):
        raise DataError("All examples in a batch must have the same number of candidates")
    if all(len(c) == 1 for ex in batch for c in ex.candidates):
        inputs = {k: v.to(device) for k, v in _left_padded([ex.prompt for ex in batch], pad_id).items()}
        logits = model(**inputs, logits_to_keep=1).logits[:, -1, :].float()
        ids = torch.tensor([[c[0] for c in ex.candidates] for ex in batch], device=device)
        return logits.log_softmax(-1).gather(1, ids)
    # General case: one sequence per (example, candidate); keep logits for the candidate tokens only.
    seqs, cand_lens = [], []
    for ex in batch:
        for cand in ex.candidates:
            seqs.append(ex.prompt + cand)
            cand_lens.append(len(cand))
    keep = max(cand_lens) + 1
    inputs = {k: v.to(device) for k, v in _left_padded(seqs, pad_id).items()}
    logprobs = model(**inputs, logits_to_keep=keep).logits.float().log_softmax(-1)
    scores = torch.empty(len(seqs), device=device)
    for i, (seq, n) in enumerate(zip(seqs, cand_lens)):
        targets = torch.tensor(seq[-n:], device=device)
        # logits at position j predict token j + 1; the last `keep` positions end at the sequence end.
        picked = logprobs[i, keep - n - 1 : keep - 1].gather(1, targets[:, None])
        scores[i] = picked.mean()
    return scores.view(len(batch), num_cands)


def classification_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the candidates' scores (MeZO's classification loss)."""
    return F.cross_entropy(scores, labels.to(scores.device))


def task_loss(task: Task, model, batch: Sequence[Encoded], pad_id: int, *, grad: bool = False) -> torch.Tensor:
    """The training loss of MeZO's protocol, arXiv 2305.17333: cross-entropy over the candidates for classification; for multiple choice
    and QA the LM loss (mean token negative log-likelihood, averaged over the batch's examples) of the correct
    candidate alone, so the other candidates cost no forward pass. ``grad``: build the autograd graph."""
    if task.kind == "classification":
        labels = torch.tensor([ex.label for ex in batch])
        return classification_loss(candidate_scores(model, batch, pad_id, grad=grad), labels)
    correct = [Encoded(ex.prompt, (ex.candidates[ex.label],), 0) for ex in batch]
    return -candidate_scores(model, correct, pad_id, grad=grad).mean()


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose highest-scoring candidate is the label."""
    return (scores.argmax(-1).cpu() == labels.cpu()).float().mean().item()


def evaluate(
    model, examples: Sequence[Encoded], pad_id: int, *, batch_size: int = 32, desc: str | None = None,
    tokenizer=None, max_new_tokens: int = 50,
) -> dict[str, float]:
    """Score ``model`` on encoded examples; ``desc`` shows a progress bar with that label.

    Returns ``accuracy`` and ``loss`` (cross-entropy over the candidates) for classification and multiple choice;
    ``em``, ``f1`` and ``loss`` (LM loss of the first gold answer) for examples with gold answers (QA, decoded
    greedily, which needs ``tokenizer``). ``score`` is the task's main metric: accuracy, or F1 for QA. A model
    whose outputs are not finite (a diverged fine-tune) scores NaN: the argmax of NaN logits is arbitrary, and a
    number would claim an accuracy the model does not have.
    """
    if examples and examples[0].answers:
        if tokenizer is None:
            raise ValueError("evaluating a generation task needs the tokenizer")
        return _evaluate_generation(model, examples, pad_id, tokenizer, batch_size, desc, max_new_tokens)
    # Multiple-choice rows may differ in their number of candidates (ReCoRD): batch equal counts together.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].candidates))
    batches = [[examples[i] for i in order[start : start + batch_size]] for start in range(0, len(order), batch_size)]
    batches = [group for batch in batches for group in _by_candidate_count(batch)]
    correct, loss_sum, finite = 0, 0.0, True
    for batch in tqdm(batches, desc=desc, disable=desc is None, leave=False, unit="batch", dynamic_ncols=True):
        scores = candidate_scores(model, batch, pad_id).cpu()
        target = torch.tensor([ex.label for ex in batch])
        finite = finite and bool(torch.isfinite(scores).all())
        correct += int((scores.argmax(-1) == target).sum())
        loss_sum += F.cross_entropy(scores, target, reduction="sum").item()
    count = max(len(examples), 1)
    accuracy = correct / count if finite else math.nan
    return {"accuracy": accuracy, "loss": loss_sum / count if finite else math.nan, "score": accuracy}


def _by_candidate_count(batch: list[Encoded]) -> list[list[Encoded]]:
    groups: dict[int, list[Encoded]] = {}
    for ex in batch:
        groups.setdefault(len(ex.candidates), []).append(ex)
    return list(groups.values())


def _evaluate_generation(model, examples, pad_id, tokenizer, batch_size, desc, max_new_tokens):
    em = f1 = loss = 0.0
    starts = range(0, len(examples), batch_size)
    for start in tqdm(starts, desc=desc, disable=desc is None, leave=False, unit="batch", dynamic_ncols=True):
        batch = examples[start : start + batch_size]
        predictions = generate_answers(model, batch, tokenizer, pad_id, max_new_tokens=max_new_tokens)
        for ex, prediction in zip(batch, predictions):
            em += exact_match(prediction, ex.answers)
            f1 += f1_score(prediction, ex.answers)
        loss -= candidate_scores(model, batch, pad_id).sum().item()
    count = max(len(examples), 1)
    if not math.isfinite(loss):  # answers decoded from non-finite logits are noise
        em = f1 = loss = math.nan
    return {"em": em / count, "f1": f1 / count, "loss": loss / count, "score": f1 / count}


_NEWLINE_IDS: dict[int, list[int]] = {}


def _newline_token_ids(tokenizer) -> list[int]:
    """Every token whose text contains a newline: greedy decoding stops at any of them (MeZO's rule)."""
    key = id(tokenizer)
    if key not in _NEWLINE_IDS:
        ids = [i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])]
        _NEWLINE_IDS[key] = ids
    return _NEWLINE_IDS[key]


@torch.inference_mode()
def generate_answers(model, batch: Sequence[Encoded], tokenizer, pad_id: int, *, max_new_tokens: int = 50
                     ) -> list[str]:
    """Greedy continuations of the prompts, each cut at its first newline and stripped."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in _left_padded([ex.prompt for ex in batch], pad_id).items()
              if k != "position_ids"}
    stop = _newline_token_ids(tokenizer) + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop,
                            pad_token_id=pad_id)
    texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [text.split("\n")[0].strip() for text in texts]
