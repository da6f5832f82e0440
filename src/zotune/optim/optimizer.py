"""``ZOOptimizer``: a ``torch.optim.Optimizer`` that trains with forward passes only."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zotune.errors import ConfigError, StateError, ZotuneWarning
from zotune.methods import (
    METHODS,
    SAMPLERS,
    Method,
    MethodConfig,
    Probe,
    SamplerConfig,
    build_method,
    build_sampler,
    route_options,
)
from zotune.optim.config import EARLIER_DEFAULT_NOISES, PERTURBATIONS, ZOConfig, legacy_noise
from zotune.optim.updates import UpdateContext
from zotune.perturb import NOISES, PerturbationEngine, attach_perturbation_hooks, mix_seed
from zotune.registry import normalise
from zotune.settings import is_real

__all__ = ["ZOOptimizer", "StepRecord", "ZOConfig", "PERTURBATIONS"]

_FLOAT32_MAX = torch.finfo(torch.float32).max
# Stream ids for the sampler's and the method's own draws in a step, distinct from direction indices 0..n-1.
_PLAN_STREAM = 1 << 32
_METHOD_STREAM = (1 << 32) + 1


@dataclass
class StepRecord:
    """What one step consumed and decided: enough, with the optimizer's settings, to replay its update.

    Attributes:
        step: the step's index (``step_count`` before it).
        seed: the 63-bit step seed every direction was derived from.
        lr: the learning rate the step used.
        losses: every loss value the step consumed, in call order (probes, then any the update rule or the
            method evaluated, fresh batches included). Replaying feeds these back instead of running forwards.
        grads: the projected gradient of each direction.
        plan: the blocks updated, with their update weights, when a sampler chose a subset (None: every block,
            weight 1).
        skipped: the step was skipped because a loss was not finite.
    """

    step: int
    seed: int
    lr: float
    losses: list[float] = field(default_factory=list)
    grads: list[float] = field(default_factory=list)
    plan: tuple[tuple[int, ...], tuple[float, ...]] | None = None
    skipped: bool = False


class ZOOptimizer(torch.optim.Optimizer):
    r"""Zeroth-order optimizer: SPSA with the seed trick, driven by ``step(closure)``.

    .. math::
        \begin{aligned}
        &\textbf{for } i = 1..n: \quad s_i = \mathrm{mix}(s_t, i),\;
            g_i = \frac{L(\theta + \epsilon z_i) - L(\theta - \epsilon z_i)}{2\epsilon} \\
        &\hat g = \frac1n \sum_i g_i z_i, \quad \theta \leftarrow \mathrm{update}(\theta, \hat g)
        \end{aligned}

    Each step draws one 63-bit step seed :math:`s_t` from a ``torch.Generator`` seeded with ``seed``; every
    direction, and the noise of every block, is derived from it by hashing, so a step is replayable from its
    seed and the scalars :math:`g_i`. The global RNG is never touched.

    With ``update="sgd"`` and ``fuse_restore=True`` (the default) the restore :math:`+\epsilon z` of the last
    direction and the update share one pass over the weights, :math:`\theta \leftarrow \theta + (\epsilon -
    \eta g) z`; this equals the separate restore and update up to float rounding.

    Args:
        params: an ``nn.Module`` (its parameters with ``requires_grad``), or an iterable of ``(name, tensor)``
            pairs or tensors. Block order follows this order.
        method: a registered method name (``mezo``, ``adalezo``, ...) or a ``MethodConfig`` (default ``mezo``).
        config: every other setting as a :class:`~zotune.optim.config.ZOConfig`, or
        **settings: the same settings as keywords (``lr=``, ``eps=``, ``update=``, ...: the fields of
            ``ZOConfig``, which documents each with its default). Unknown keywords are refused.

    Raises:
        ConfigError: an argument is out of range, an option pair is incompatible, or there is nothing to train.
        UnknownNameError: ``method`` or ``update`` is not registered.

    Example:
        >>> opt = ZOOptimizer(model, method="mezo", eps=1e-3, seed=0)  # lr: MeZO's default, 3e-5
        >>> loss = opt.step(lambda: compute_loss(model, batch))
    """

    def __init__(
        self,
        params: nn.Module | Iterable[torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
        method: str | MethodConfig | None = None,
        *,
        config: ZOConfig | None = None,
        **settings: Any,
    ) -> None:
        if config is None:
            config = ZOConfig.from_settings({**settings, **({} if method is None else {"method": method})})
        elif settings or method is not None:
            raise ConfigError("ZOOptimizer takes its settings as a ZOConfig or as keywords, not both")
        self.config = config
        method, sampler, update = config.method, config.sampler, config.update
        lr, eps, seed, n_directions = config.lr, config.eps, config.seed, config.n_directions
        weight_decay, perturbation, noise = config.weight_decay, config.perturbation, config.noise
        named = _named_trainable(params)
        if not named:
            raise ConfigError("ZOOptimizer got no trainable parameters (none has requires_grad=True)")
        perturbation = _perturbation_mode("deferred" if config.direction_parallel else perturbation, params, named)
        defaults = dict(lr=lr, eps=eps, weight_decay=weight_decay, n_directions=n_directions)
        super().__init__([p for _, p in named], defaults)
        method_name = method.name if isinstance(method, MethodConfig) else method
        spec = METHODS.get(method_name)
        sampler = spec.sampler if sampler is None else sampler
        sampler_name = sampler.name if isinstance(sampler, SamplerConfig) else sampler
        # A config given as an object takes no further options (None below).
        method_options, sampler_options = route_options(dict(config.method_options), [
            (f"method {method_name!r}", None if isinstance(method, MethodConfig) else spec.config_cls),
            (f"sampler {sampler_name!r}", None if isinstance(sampler, SamplerConfig) else SAMPLERS.get(sampler).config_cls),
        ])
        self.method = build_method(method, method_options)
        self.rule = self.method.update_rule(config.update_rule())
        self.method.directions_per_step(n_directions)  # refuses a count the method cannot honour, up front
        # (rank, world size) when the directions are spread over ranks (direction_parallel), else None.
        self.direction_split = _direction_world(config.direction_parallel, n_directions, self.method)
        self.sampler = build_sampler(sampler, sampler_options)
        self.engine = PerturbationEngine(named, direction=_noise_source(noise, self.method),
                                         deferred=perturbation == "deferred")
        self.perturbation = perturbation
        self._hooks = attach_perturbation_hooks(params, self.engine) if self.engine.deferred else []
        # When the optimizer goes (collected or closed), its noise threads stop and its hooks leave the model,
        # even while the model lives on; the finalizer holds the engine and the hooks, never the optimizer.
        self._release = weakref.finalize(self, _release, self.engine, self._hooks)
        self.method.see_model(params if isinstance(params, nn.Module) else None)
        self.method.setup(self.engine)
        self.method.check_settings(lr, eps)
        self.sampler.setup(self.engine)
        self.update_name = update
        self.fuse_restore = config.fuse_restore
        self.seed = seed
        # The largest finite value of the trainable tensors' narrowest float type (fp16: 65504).
        self._dtype_max = min(torch.finfo(p.dtype).max for _, p in named)
        self._generator = torch.Generator(device="cpu").manual_seed(seed)
        self.step_count = 0
        self.forward_passes = 0
        self.consecutive_skips = 0
        self.last_probes: list[Probe] = []
        self.last_record: StepRecord | None = None
        # Where the last step's time went, in seconds: forward passes, perturbing and restoring, the update,
        # and the rest (plans, bookkeeping, the method's own work outside forward passes).
        self.last_step_seconds: dict[str, float] = {}
        self._forward_seconds = 0.0
        # The constructor's arguments with every default resolved: the seed log stores them to rebuild this
        # optimizer for a replay.
        self.settings: dict[str, Any] = {
            **{f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "direction_parallel"},
            "method": self.method.config.name, "sampler": self.sampler.config.name, "betas": list(config.betas),
            "perturbation": perturbation,
            "method_options": {**_options_of(self.method.config), **_options_of(self.sampler.config)},
        }

    @property
    def hparams(self) -> dict[str, Any]:
        """Deprecated name of ``settings``."""
        warnings.warn("ZOOptimizer.hparams is now ZOOptimizer.settings", FutureWarning, stacklevel=2)
        return self.settings

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], Any], *, fresh_closure: Callable[[int], Callable[[], Any]] | None = None
    ) -> float:
        """Run one ZO step.

        Args:
            closure: returns the mini-batch loss at the current weights (a scalar tensor or float). It must not
                change the batch between calls within one step: it is called ``2 n`` times (more for methods that
                probe more, or ``cons``).
            fresh_closure: ``fresh_closure(j)`` returns a closure like ``closure`` on the j-th fresh batch of
                this step, for methods that probe on other batches (DiZO's projection rounds). Without it they
                use ``closure``'s batch, with a warning.

        Returns:
            The step's loss estimate at theta: the mean of the probes' losses (``(L+ + L-) / 2`` for SPSA).
            NaN when the step was skipped because a loss was not finite.
        """
        if closure is None:
            raise ConfigError("ZOOptimizer.step needs a closure that returns the loss")
        if getattr(self, "_closed", False):
            raise StateError("This ZOOptimizer was closed; build a new one to go on training")
        group = self.param_groups[0]
        self._check_group(group)
        started = time.perf_counter()
        self._forward_seconds = 0.0
        generator_state = self._generator.get_state()
        step_seed = int(torch.randint(0, 2**63 - 1, (1,), generator=self._generator))
        record = self.last_record = StepRecord(self.step_count, step_seed, float(group["lr"]))
        loss_fn = self._counting(closure)
        plan_generator = torch.Generator(device="cpu").manual_seed(mix_seed(step_seed, _PLAN_STREAM))
        self._updated = False
        try:
            return self._probe_and_update(loss_fn, record, plan_generator, fresh_closure, started)
        except BaseException:
            # The closure raised, returned no loss, or the step was interrupted: take the probes back out of the
            # weights, so they are as they were before the step (to float rounding, in place; exactly, deferred),
            # and rewind the step seed, so calling step again repeats this step. (Once the update is applied, a
            # failure in a method's own round after it, DiZO's projection, leaves the updated weights.)
            self.engine.undo_perturbations()
            if not self._updated:
                self._generator.set_state(generator_state)
            raise

    def _probe_and_update(self, loss_fn: Callable[[], float], record: StepRecord, plan_generator: torch.Generator,
                          fresh_closure: Callable[[int], Callable[[], Any]] | None, started: float) -> float:
        group, step_seed = self.param_groups[0], record.seed
        plan = self.sampler.plan(self.step_count, plan_generator)
        plan = self.method.plan(self.step_count, plan_generator, plan)
        n = self.method.directions_per_step(group["n_directions"])
        probes: list[Probe | None] = []
        probing_started = time.perf_counter()
        for i in range(n):
            if self.direction_split is not None and i % self.direction_split[1] != self.direction_split[0]:
                probes.append(None)  # another rank's direction
                continue
            probe = self.method.probe(loss_fn, mix_seed(step_seed, i), group["eps"], plan)
            probes.append(probe)
            usable = self._usable(probe.projected_grad, group["lr"], n)
            keep_pending = i == n - 1 and self.fuse_restore and not self.engine.deferred and usable
            if probe.restore is not None and not keep_pending:
                self.engine.perturb(probe.restore[0], probe.restore[1], plan)
                probe.restore = None
            if not usable and self.direction_split is None:
                return self._skip(probes, started)
        if self.direction_split is not None:
            probes = self._share_probes(probes, step_seed)
            if not all(self._usable(p.projected_grad, group["lr"], n) for p in probes):
                return self._skip(probes, started)
        probes = self.method.finish(probes)
        if not all(self._usable(p.projected_grad, group["lr"], n) for p in probes):
            if probes[-1].restore is not None:  # the fused restore will not come: put it in now
                self.engine.perturb(probes[-1].restore[0], probes[-1].restore[1], plan)
                probes[-1].restore = None
            return self._skip(probes, started)
        probing = time.perf_counter() - probing_started
        forward_in_probes = self._forward_seconds
        self.last_probes = probes
        plan = self.sampler.reweight(probes, plan)
        record.grads = [p.projected_grad for p in probes]
        if plan.blocks != tuple(range(len(self.engine))) or any(w != 1.0 for w in plan.weights):
            record.plan = (plan.blocks, plan.weights)
        updating_started = time.perf_counter()
        self.rule.update(
            UpdateContext(
                engine=self.engine,
                plan=plan,
                directions=[(p.seed, p.projected_grad / n) for p in probes],
                restore=probes[-1].restore,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                state=self.state,
                loss_fn=loss_fn,
            )
        )
        updating = time.perf_counter() - updating_started - (self._forward_seconds - forward_in_probes)
        self.engine.applied.clear()  # the update folded in the last restore: nothing is left to undo
        self._updated = True
        probes[-1].restore = None
        self._check_restored()
        self.sampler.observe(probes, plan)
        self.method.observe(probes, plan)
        method_generator = torch.Generator(device="cpu").manual_seed(mix_seed(step_seed, _METHOD_STREAM))
        fresh_loss = None if fresh_closure is None else (lambda j: self._counting(fresh_closure(j)))
        self.method.after_update(self.step_count, loss_fn, method_generator, fresh_loss)
        self.step_count += 1
        self.consecutive_skips = 0
        self._time_step(started, perturb=probing - forward_in_probes, update=updating)
        return sum(p.loss for p in probes) / n

    def _usable(self, projected_grad: float, lr: float, n: int) -> bool:
        """Whether a direction's projected gradient can be applied: finite, g times a draw of z representable in
        float32 (the estimate's buffers of momentum and adam), and the step ``lr g / n`` times z representable in
        the weights' dtype (|z| <= 16: a Gaussian beyond 16 sigma has probability below 1e-57). Losses near the
        float range (a finite 3e38 from a closure) otherwise write inf weights or overflow those buffers."""
        return (math.isfinite(projected_grad) and 16.0 * abs(projected_grad) < _FLOAT32_MAX
                and 16.0 * abs(lr * projected_grad / n) < self._dtype_max)

    def _check_group(self, group: dict[str, Any]) -> None:
        """The settings a user may change between steps (``param_groups[0]["lr"] = ...``, a scheduler),
        checked before they touch a weight: a NaN lr would silently turn every weight NaN."""
        for key, low in (("lr", 0.0), ("eps", None)):
            value = group[key]
            if not is_real(value) or not math.isfinite(value) or (low is None and value <= 0) or (
                    low is not None and value < low):
                need = "a finite number >= 0" if low is not None else "a finite number > 0"
                raise ConfigError(f"Invalid {key}: {value!r} in param_groups[0] (must be {need})")

    def _time_step(self, started: float, *, perturb: float = 0.0, update: float = 0.0) -> None:
        total = time.perf_counter() - started
        forward = self._forward_seconds
        self.last_step_seconds = {"forward": forward, "perturb": perturb, "update": update,
                                  "other": max(total - forward - perturb - update, 0.0), "total": total}

    def _share_probes(self, probes: list[Probe | None], step_seed: int) -> list[Probe]:
        """Direction parallelism: fill in the other ranks' directions (one all-reduce of n x 3 floats)."""
        from zotune.optim.distributed import sum_over_ranks

        table = torch.zeros(len(probes), 3, dtype=torch.float64)
        for i, probe in enumerate(probes):
            if probe is not None:
                table[i] = torch.tensor([probe.projected_grad, *probe.losses], dtype=torch.float64)
        rows = sum_over_ranks(table).tolist()
        shared = [Probe(mix_seed(step_seed, i), grad, (plus, minus)) for i, (grad, plus, minus) in enumerate(rows)]
        # The step consumed every rank's losses, in direction order: what a replay on one process feeds back.
        self.last_record.losses = [loss for p in shared for loss in p.losses]
        return shared

    def _check_restored(self) -> None:
        # Every probe must be undone before the update: a term left pending would leak into later forwards.
        if self.engine.pending:
            left = {self.engine.blocks[b].name: terms for b, terms in list(self.engine.pending.items())[:3]}
            self.engine.pending.clear()
            raise StateError(f"Method {self.method.config.name!r} left perturbations pending: {left}")

    def remove_hooks(self) -> None:
        """Detach the deferred-perturbation hooks from the model (the optimizer cannot step afterwards)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def close(self) -> None:
        """Stop the optimizer's noise threads and detach its hooks from the model. Happens by itself when the
        optimizer is collected; ``with ZOOptimizer(...) as opt:`` does it at the end of the block. The optimizer
        cannot step afterwards."""
        self._release()
        self._closed = True

    def __enter__(self) -> ZOOptimizer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _skip(self, probes: list[Probe], started: float) -> float:
        self._check_restored()
        self.engine.applied.clear()
        self._time_step(started)
        self.consecutive_skips += 1
        self.step_count += 1
        self.last_probes = probes
        self.last_record.grads = [p.projected_grad for p in probes]
        self.last_record.skipped = True
        losses = [p.losses for p in probes]
        what = ("Non-finite loss" if not all(math.isfinite(v) for pair in losses for v in pair)
                else "Projected gradient beyond the weights' float range")
        warnings.warn(
            f"{what} at step {self.step_count - 1} (losses {losses}, projected gradients "
            f"{self.last_record.grads}); the step was skipped and the weights restored",
            ZotuneWarning,
            stacklevel=3,
        )
        return float("nan")

    def _counting(self, closure: Callable[[], Any]) -> Callable[[], float]:
        def loss_fn() -> float:
            self.forward_passes += 1
            forward_started = time.perf_counter()
            value = _loss_value(closure())
            self._forward_seconds += time.perf_counter() - forward_started
            if self.last_record is not None:
                self.last_record.losses.append(value)
            return value

        return loss_fn

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["zo"] = {
            "generator": self._generator.get_state(),
            "step_count": self.step_count,
            "forward_passes": self.forward_passes,
            "consecutive_skips": self.consecutive_skips,
            "method": self.method.config.name,
            "sampler": self.sampler.config.name,
            "update": self.update_name,
            "noise": self.engine.source.name if self.engine.source is not None else None,
            "method_state": self.method.state_dict(),
            "sampler_state": self.sampler.state_dict(),
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        zo = state_dict.pop("zo", None)
        if zo is None:
            raise StateError("Not a ZOOptimizer state dict: the 'zo' entry is missing")
        mine_by_key = (("method", self.method.config.name), ("sampler", self.sampler.config.name),
                       ("update", self.update_name))
        for key, mine in mine_by_key:
            if normalise(zo[key]) != normalise(mine):  # zo_finetuner (older states) is zo-finetuner
                raise StateError(f"State dict is for {key}={zo[key]!r}, this optimizer has {key}={mine!r}")
        self._continue_noise(zo.get("noise", _BEFORE_NOISE_RECORDED))
        super().load_state_dict(state_dict)
        self._generator.set_state(zo["generator"])
        self.step_count = int(zo["step_count"])
        self.forward_passes = int(zo["forward_passes"])
        self.consecutive_skips = int(zo["consecutive_skips"])
        self.method.load_state_dict(zo["method_state"])
        self.sampler.load_state_dict(zo["sampler_state"])

    def _continue_noise(self, saved: str | None) -> None:
        """Go on with the stream the state was made with, when this optimizer has a default noise (it may not have
        been chosen): a state from before states recorded their noise drew ``gaussian`` from torch's generator,
        now ``torch-gaussian``; one made under an earlier default names it. Said in a warning. A noise that differs
        from the state's and is not the default is refused."""
        mine = self.engine.source.name if self.engine.source is not None else None
        if saved == _BEFORE_NOISE_RECORDED:
            if mine not in (ZOConfig.noise, *EARLIER_DEFAULT_NOISES):
                return  # chosen by the caller, who knows what the old state drew
            saved, switchable = legacy_noise({**self.settings, "noise": "gaussian"})["noise"], True
        else:
            switchable = mine == ZOConfig.noise
        if saved == mine:
            return
        if not switchable:
            raise StateError(f"State dict is for noise={saved!r}, this optimizer has noise={mine!r} (build it with "
                             f"noise={saved!r} to go on with the stream the state was made with)")
        warnings.warn(f"This optimizer state drew its directions from `{saved}`, not from this zotune's default "
                      f"`{mine}`: the run goes on with the stream it started with, {saved}", ZotuneWarning,
                      stacklevel=3)
        self.engine.source = NOISES.get(saved)
        self.config.noise = self.settings["noise"] = saved


# What a state from before states recorded their noise stands for (see ``ZOOptimizer._continue_noise``).
_BEFORE_NOISE_RECORDED = "unrecorded"


def _release(engine: PerturbationEngine, hooks: list) -> None:
    engine.close()
    for handle in hooks:
        handle.remove()
    hooks.clear()


def _loss_value(loss: Any) -> float:
    """The closure's loss as a float: a one-element real tensor or a real number, nothing else (a string or a
    bool would turn into a number that is not a loss)."""
    if isinstance(loss, torch.Tensor) and loss.numel() == 1 and not loss.is_complex() and loss.dtype != torch.bool:
        return float(loss.item())
    if is_real(loss):
        return float(loss)
    shape = f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""
    raise ConfigError(f"The closure must return the loss as a one-element tensor or a number; it returned "
                      f"{type(loss).__name__}{shape}")


def _direction_world(enabled: bool, n_directions: int, method: Any) -> tuple[int, int] | None:
    """(rank, world size) when directions are spread over ranks, else None."""
    if not enabled:
        return None
    from zotune.methods import Method
    from zotune.optim.distributed import group_context

    group = group_context("directions")
    if group is None:
        raise ConfigError("direction_parallel needs an initialised torch.distributed process group")
    world = group.world_size
    if n_directions % world:
        raise ConfigError(f"direction_parallel: n_directions {n_directions} is not a multiple of the world size "
                          f"{world}")
    if type(method).probe is not Method.probe:
        raise ConfigError(f"direction_parallel needs the two-point probe; method {method.config.name!r} probes "
                          "its own way (use data parallelism)")
    return group.rank, world


def _options_of(config: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _noise_source(noise: str, method: Method) -> Any:
    """The engine's distribution of z: the named one, or the method's own (its ``noise_source()``)."""
    own = method.noise_source()
    if own is None:
        return NOISES.get(noise)
    if noise not in (ZOConfig.noise, *EARLIER_DEFAULT_NOISES, own.name):  # a default (now or then) is no choice
        raise ConfigError(f"method {method.config.name!r} draws its own directions; noise={noise!r} does not "
                          "apply to it")
    return own


def _perturbation_mode(mode: str, params: Any, named: list[tuple[str, torch.Tensor]]) -> str:
    is_module = isinstance(params, nn.Module)
    if mode == "deferred" and not is_module:
        raise ConfigError("perturbation='deferred' needs the model (an nn.Module) as params: it works through "
                          "the modules' forward hooks")
    if mode == "auto":
        low_precision = any(p.dtype != torch.float32 for _, p in named)
        return "deferred" if is_module and low_precision else "in_place"
    return mode


def _named_trainable(params: Any) -> list[tuple[str, torch.Tensor]]:
    if isinstance(params, nn.Module):
        return [(n, p) for n, p in params.named_parameters() if p.requires_grad]
    items = list(params)
    if items and isinstance(items[0], dict):
        raise ConfigError("ZOOptimizer takes one parameter group; pass a module or a list of tensors")
    named, seen = [], {}
    for i, item in enumerate(items):
        name, tensor = item if isinstance(item, tuple) else (f"param.{i}", item)
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise ConfigError(f"Parameter {name!r} is not a floating-point tensor")
        if id(tensor) in seen:  # it would be perturbed and updated twice a step (torch.optim refuses it too)
            raise ConfigError(f"Parameter {name!r} is given twice (first as {seen[id(tensor)]!r})")
        seen[id(tensor)] = name
        if tensor.requires_grad:
            named.append((name, tensor))
    return named
