"""Weights beyond RAM (``--offload disk``): every weight of the model in a file of zotune's own, memory-mapped.

The model is built without weights (``accelerate.init_empty_weights``); the tensors of its safetensors files are
read one at a time, converted to the run's dtype and written each into a file of its own (``00000.bin``, ... in the
order of ``named_parameters``), which the parameter then is, mapped shared (``torch.from_file``). One file a tensor,
not one for all: tensors that share a storage count as tied weights to safetensors and to ``save_pretrained``.
The operating system then pages weights in as the forward passes read them and writes updated pages back, so the
process holds what a step touches, not the model.
Probes must not write the weights (deferred perturbation, which an offloaded run uses); an update writes each
block once a step. The arithmetic is the one of a model in RAM, so a step's weights are the same bitwise (tested).

The same layout, a file a tensor, is what a CPU-to-GPU offload would stream from
(ZO2's setting, arXiv 2503.12668): a block's slice copied to the device for its forward, its update copied back.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from zotune.errors import AssetError

__all__ = ["load_offloaded", "is_offloaded"]


def load_offloaded(source: Path, folder: Path, dtype: torch.dtype, *,
                   trust_remote_code: bool = False) -> tuple[nn.Module, dict[str, list]]:
    """The model of the Hugging Face folder ``source`` with its weights in files under ``folder``, memory-mapped,
    and what loading found, as ``from_pretrained(output_loading_info=True)`` reports it (``missing_keys``,
    ``mismatched_keys``, ``unexpected_keys``), for ``load_model`` to check as it checks a model in RAM.

    Raises:
        AssetError: ``source`` is not a folder of safetensors files.
    """
    from accelerate import init_empty_weights
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    files = sorted(Path(source).glob("*.safetensors")) if isinstance(source, Path) else []
    if not files:
        raise AssetError(f"--offload disk reads a local folder of .safetensors weights; {source} has none "
                         "(save the model with save_pretrained, or convert it, first)")
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    with init_empty_weights(include_buffers=False):  # parameters on the meta device, buffers real
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    model.tie_weights()
    params = dict(model.named_parameters())  # tied weights appear once
    aliases = set(model.state_dict()) - set(params)  # a tied weight's other name, and buffers
    folder.mkdir(parents=True, exist_ok=True)
    mapped = {}
    for i, (name, param) in enumerate(params.items()):
        path = folder / f"{i:05d}.bin"
        path.unlink(missing_ok=True)  # an earlier run's (a resumed run starts from the base weights again)
        mapped[name] = torch.from_file(str(path), shared=True, size=param.numel(), dtype=dtype).view(param.shape)
    written, mismatched, unexpected = set(), [], []
    for path in files:
        with safe_open(str(path), framework="pt") as tensors:
            for key in tensors.keys():
                if key not in params:
                    if key not in aliases:
                        unexpected.append(key)
                    continue
                value = tensors.get_tensor(key)  # one tensor in memory at a time
                if tuple(value.shape) != tuple(params[key].shape):
                    mismatched.append((key, tuple(value.shape), tuple(params[key].shape)))
                    continue
                mapped[key].copy_(value)
                written.add(key)
                del value
    loading = {"missing_keys": sorted(set(params) - written - {k for k, _, _ in mismatched}),
               "mismatched_keys": mismatched, "unexpected_keys": unexpected}
    for name, param in params.items():
        module_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(module_name)
        module._parameters[leaf] = nn.Parameter(mapped[name], requires_grad=param.requires_grad)
    model.tie_weights()  # a tied output layer shares the embedding's new parameter
    model.eval()
    return model, loading


def is_offloaded(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` lives in a memory-mapped offload file."""
    return bool(getattr(tensor.untyped_storage(), "filename", None))
