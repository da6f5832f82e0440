"""What every method must do, run over the table of tests/method_db.py: the same seed gives the same run, a
state-dict round trip continues like an uninterrupted run, every update rule composes with it, a seed log of it
replays bitwise, and options it does not take are refused."""

import pytest
import torch

from method_db import CASES, UPDATE_RULES, LayeredModel, build, named_params, quadratic, weights
from zotune.errors import ConfigError
from zotune.train.replay import replay
from zotune.train.seedlog import SeedLogWriter, read_seed_log


def _train(case, folder, steps, seed=3, **settings):
    named = named_params()
    loss, fresh = quadratic(named)
    opt = build(case, named, folder, seed=seed, **settings)
    for _ in range(steps):
        opt.step(loss, fresh_closure=fresh)
    return named, opt, (loss, fresh)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_same_seed_same_run_and_another_seed_another_run(case, tmp_path):
    (a, _, _), (b, _, _), (c, _, _) = (_train(case, tmp_path, 4, seed=s) for s in (3, 3, 4))
    assert torch.equal(weights(a), weights(b))
    assert not torch.equal(weights(a), weights(c))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_state_dict_round_trip_continues_like_an_uninterrupted_run(case, tmp_path):
    straight, _, _ = _train(case, tmp_path, 6)
    named, first, (loss, fresh) = _train(case, tmp_path, 3)
    state = first.state_dict()
    # A new optimizer over the already-trained tensors: everything the method learned must come from the state.
    second = build(case, named, tmp_path)
    second.load_state_dict(state)
    for _ in range(3):
        second.step(loss, fresh_closure=fresh)
    assert torch.equal(weights(named), weights(straight))


@pytest.mark.parametrize("update", UPDATE_RULES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_composes_with_every_update_rule(case, update, tmp_path):
    named = named_params()
    loss, fresh = quadratic(named)
    start = loss()
    if case.updates is not None and update not in case.updates:
        with pytest.raises(ConfigError, match=f"not {update!r}"):
            build(case, named, tmp_path, update=update)
        return
    opt = build(case, named, tmp_path, update=update, lr=case.lrs.get(update, UPDATE_RULES[update]), seed=0)
    for _ in range(150):
        opt.step(loss, fresh_closure=fresh)
    assert loss() < 0.7 * start, f"{case} with {update}: {start:.3f} -> {loss():.3f}"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_seed_log_replays_bitwise(case, tmp_path):
    module = LayeredModel()
    named = list(module.named_parameters())
    loss, fresh = quadratic(named)
    opt = build(case, named, tmp_path)
    log = SeedLogWriter(tmp_path / "seeds.jsonl", opt, module, model_name="db", dtype="float32")
    for _ in range(5):
        opt.step(loss, fresh_closure=fresh)
        log.append(opt.last_record)
    log.finish(opt.step_count)
    base = LayeredModel()
    assert replay(read_seed_log(tmp_path / "seeds.jsonl"), base).matches_log
    assert torch.equal(weights(list(base.named_parameters())), weights(named))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_an_option_no_config_declares_is_refused(case, tmp_path):
    named = named_params()
    with pytest.raises(ConfigError, match=r"Unknown option\(s\) \['no_such_option'\]"):
        build(case, named, tmp_path, method_options={"no_such_option": 1})
