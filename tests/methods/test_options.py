"""Option values of the wrong type are ConfigErrors for every method and sampler config."""

import pytest
import torch

from zotune import ZOOptimizer
from zotune.errors import ConfigError


def _layered_params():
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.k_proj.weight",
             "model.layers.1.self_attn.v_proj.weight", "model.norm.weight"]
    return [(n, torch.nn.Parameter(torch.zeros(3))) for n in names]


@pytest.mark.parametrize("method,options,pattern", [
    ("adalezo", {"temperature": "hot"}, r"Invalid temperature: 'hot' \(must be of type float\)"),
    ("adalezo", {"rms_scaling": 1}, r"Invalid rms_scaling: 1 \(must be of type bool\)"),
    ("dizo", {"probe_eps": "small", "interval": True}, r"Invalid interval: True .*; Invalid probe_eps: 'small'"),
    ("dizo", {"projected_patterns": [5]}, r"Invalid projected_patterns entry 5 \(must be a string\)"),
    ("ldsd", {"sigma": "abc"}, r"Invalid sigma: 'abc' \(must be of type float\)"),
    ("ldsd", {"candidates": 2.5}, r"Invalid candidates: 2.5 \(must be of type int\)"),
])
def test_options_of_the_wrong_type_are_config_errors(method, options, pattern):
    with pytest.raises(ConfigError, match=pattern):
        ZOOptimizer(_layered_params(), method, method_options=options)


def test_numeric_strings_from_yaml_become_numbers():
    from zotune.methods.ldsd import LDSDConfig

    config = LDSDConfig(lr_mu="2e-3", candidates="3")  # YAML 1.1 reads 2e-3 as a string
    assert config.lr_mu == 2e-3 and config.candidates == 3
