"""Data- and direction-parallel ZO with gloo on localhost: two ranks against one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from zotune import ZOOptimizer
from zotune.optim.distributed import ParallelContext, bytes_communicated, close_parallel, mean_over_ranks

STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(hidden: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=40, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def _batch():
    return torch.randint(3, 40, (8, 12), generator=torch.Generator().manual_seed(0))


def _train(model, ids, closure_of, **optimizer_args):
    opt = ZOOptimizer(model, lr=5e-2, eps=1e-2, seed=0, **optimizer_args)
    closure = closure_of(lambda: model(input_ids=ids, labels=ids).loss)
    for _ in range(STEPS):
        opt.step(closure)
    return {n: p.detach().clone().contiguous() for n, p in model.named_parameters()}


def _worker(rank: int, world: int, port: int, mode: str, hidden: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    context = ParallelContext(mode, rank, world)
    ids = _batch()
    if mode == "data":
        weights = _train(_model(hidden), ids[context.shard(list(range(len(ids))))],
                         lambda c: mean_over_ranks(c, context))
    else:
        weights = _train(_model(hidden), ids, lambda c: c, n_directions=2, direction_parallel=True)
    save_file(weights, f"{out}/rank{rank}.safetensors")
    Path(f"{out}/rank{rank}.json").write_text(json.dumps({"bytes": bytes_communicated()}))
    close_parallel(context)  # barrier first: a rank leaving while its peer still talks makes gloo abort


def _run_ranks(tmp_path, mode, hidden=32, world=2):
    tmp_path.mkdir(parents=True, exist_ok=True)
    mp.start_processes(_worker, args=(world, _free_port(), mode, hidden, str(tmp_path)), nprocs=world,
                       start_method="spawn")
    weights = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(world)]
    sent = [json.loads((tmp_path / f"rank{r}.json").read_text())["bytes"] for r in range(world)]
    return weights, sent


def _assert_same_updates(a, b):
    """Equal updates to float tolerance: a half batch's matmuls round differently from a whole batch's, and
    (L+ - L-) / 2 eps magnifies a loss's last bits, so compare the updates relative to their size."""
    start = {n: p.detach() for n, p in _model().named_parameters()}
    _assert_close_updates(a, b, start)


def _assert_close_updates(a, b, start):
    diff = sum(float((a[n] - b[n]).pow(2).sum()) for n in start) ** 0.5
    update = sum(float((b[n] - start[n]).pow(2).sum()) for n in start) ** 0.5
    assert update > 0 and diff < 1e-3 * update, (diff, update)


def test_data_parallel_two_ranks_with_half_batches_equal_one_process_with_the_whole(tmp_path):
    (rank0, rank1), sent = _run_ranks(tmp_path, "data")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # replicas stay bitwise identical
    single = _train(_model(), _batch(), lambda c: c)
    _assert_same_updates(rank0, single)
    assert sent[0] == STEPS * 2 * 8  # one float64 per forward pass


def test_direction_parallel_equals_n_spsa_on_one_process_bitwise(tmp_path):
    (rank0, rank1), sent = _run_ranks(tmp_path, "directions")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    single = _train(_model(), _batch(), lambda c: c, n_directions=2, perturbation="deferred")
    assert all(torch.equal(rank0[k], single[k]) for k in single)
    assert sent[0] == STEPS * 2 * 3 * 8  # (g, L+, L-) per direction, once per step


def test_bytes_per_step_do_not_grow_with_the_model(tmp_path):
    _, small = _run_ranks(tmp_path / "small", "data", hidden=32)
    _, large = _run_ranks(tmp_path / "large", "data", hidden=128)
    assert small == large


def test_direction_parallel_refuses_what_would_desynchronise_the_replicas():
    from zotune.errors import ConfigError

    with pytest.raises(ConfigError, match="needs deferred perturbation"):
        ZOOptimizer(_model(), direction_parallel=True, perturbation="in_place")
    with pytest.raises(ConfigError, match="initialised torch.distributed"):
        ZOOptimizer(_model(), direction_parallel=True)


def test_torchrun_cli_data_parallel_matches_a_single_process_run(tiny_model_dir, tiny_data_dir, tmp_path):
    args = ["--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--steps", "4", "--lr", "2e-3",
            "--eps", "1e-2", "--batch-size", "8", "--num-train", "32", "--num-dev", "8", "--num-eval", "8",
            "--eval-steps", "4", "--no-progress", "--autocast", "none"]  # float32: bf16 rounds shards apart
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "zotune.cli", "train", *args, "--output-dir", str(tmp_path / "two"),
           "--parallel", "data"]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    single = subprocess.run([sys.executable, "-m", "zotune.cli", "train", *args, "--output-dir",
                             str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=1800)
    assert single.returncode == 0, single.stderr[-2000:]
    two = load_file(str(tmp_path / "two" / "checkpoint" / "weights.safetensors"))
    one = load_file(str(tmp_path / "one" / "checkpoint" / "weights.safetensors"))
    _assert_close_updates(two, one, load_file(str(tiny_model_dir / "model.safetensors")))
    assert (tmp_path / "two" / "seeds.jsonl").is_file()
