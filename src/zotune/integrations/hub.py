"""``zotune push``: a run's model folder (``best/``, ``final/``, a replayed folder) to the Hugging Face hub."""

from __future__ import annotations

from pathlib import Path

from zotune.errors import AssetError, ConfigError

__all__ = ["push_folder"]

# A folder the hub can load: a full model, or a peft adapter.
_MODEL_FILES = (("config.json", "model.safetensors"), ("config.json", "model.safetensors.index.json"),
                ("adapter_config.json", "adapter_model.safetensors"))


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                message: str | None = None) -> str:
    """Create ``repo_id`` (a model repository, if it does not exist) and upload ``folder`` into it; returns the
    commit's URL. Authentication is ``huggingface_hub``'s (``hf auth login`` or ``HF_TOKEN``).

    Raises:
        ConfigError: ``folder`` is not a loadable model or adapter folder, or ``repo_id`` is malformed.
        AssetError: the hub refused or could not be reached (the message says which).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"Nothing to push: {folder} is not a folder")
    if not any(all((folder / name).is_file() for name in files) for files in _MODEL_FILES):
        raise ConfigError(f"{folder} is not a model folder (config.json with model.safetensors, or a peft adapter): "
                          "push a run's best/ or final/, or a folder written by zotune replay")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ConfigError(f"Invalid repository id {repo_id!r}: {str(exc).splitlines()[0]}") from exc
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                   commit_message=message or f"Upload {folder.name} (zotune)")
    except Exception as exc:  # no token, no network, no permission: huggingface_hub raises several kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AssetError(f"Could not push {folder} to {repo_id}: {first} (log in with `hf auth login` or set "
                         "HF_TOKEN; the hub must be reachable)") from exc
    return str(getattr(commit, "commit_url", commit))
