"""Nothing left running: an optimizer that is gone, or closed, leaves no thread and no hook behind."""

import gc
import threading
import time

import pytest
import torch

from zotune import ZOOptimizer
from zotune.errors import StateError


def _model(dtype=torch.float32):
    # Blocks above torch's parallel grain, so steps use the engine's noise threads.
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 256), torch.nn.Linear(256, 2)).to(dtype)


def _step(opt, model):
    x = torch.ones(2, 256, dtype=next(model.parameters()).dtype)
    opt.step(lambda: model(x).float().sum())


def _settled_thread_count():
    """Live threads once the noise threads that were told to stop have ended (they stop asynchronously)."""
    gc.collect()
    deadline = time.monotonic() + 30  # generous: they end within milliseconds on a quiet machine
    for thread in threading.enumerate():
        if thread.name.startswith("zotune-noise"):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return threading.active_count()


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_building_and_dropping_100_optimizers_leaves_the_thread_count_unchanged():
    gc.collect()
    before = threading.active_count()
    for seed in range(100):
        model = _model()
        opt = ZOOptimizer(model, lr=1e-3, seed=seed, noise="torch-gaussian")  # drawn on worker threads
        _step(opt, model)
        assert opt.engine.workers < 2 or threading.active_count() > before  # the noise threads did start
        del opt, model
    assert _settled_thread_count() == before


def test_a_dropped_optimizer_takes_its_hooks_off_a_model_that_lives_on():
    model = _model(torch.bfloat16)
    opt = ZOOptimizer(model, lr=1e-3, seed=0)  # bf16 weights: deferred, through forward hooks
    assert opt.perturbation == "deferred" and _hook_count(model) > 0
    _step(opt, model)
    del opt
    gc.collect()
    assert _hook_count(model) == 0


def test_close_and_the_context_manager_stop_the_threads_at_once():
    gc.collect()
    before = threading.active_count()
    model = _model()
    with ZOOptimizer(model, lr=1e-3, seed=0, noise="torch-gaussian") as opt:  # drawn on worker threads
        _step(opt, model)
    assert threading.active_count() == before  # still referenced, yet stopped
    with pytest.raises(StateError, match="closed"):
        _step(opt, model)
    opt.close()  # twice is harmless
