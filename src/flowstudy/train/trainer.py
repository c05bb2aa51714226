"""The trainer: AdamW, warm-up + cosine schedule, EMA, validation, checkpoints, exact resume.

One loop, extended by callbacks (objects with any of ``on_step(trainer, step, loss)``,
``on_validation(trainer, step, val_loss)``, ``on_end(trainer, result)``). Everything random
flows from one torch.Generator on the training device, whose state travels in each checkpoint,
so an interrupted run resumed from ``last.pt`` retraces the uninterrupted one.

The step (:meth:`Trainer.train_step`) takes its maths from :mod:`flowstudy.train.step`; its fast
forms live beside it: one CUDA graph per step (:mod:`flowstudy.train.graph`), many runs as one
stacked model (:mod:`flowstudy.train.stacked`), eigen-coordinates for subspace residuals
(:mod:`flowstudy.train.eigen_step`).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowstudy.data import parse_augmentations
from flowstudy.errors import CheckpointError, TrainingError
from flowstudy.flows.subspace import SubspaceNet, compose_field, effective_rank
from flowstudy.checkpoint import load_checkpoint, save_checkpoint
from flowstudy.devices import resolve_device
from flowstudy.io import atomic_write_json
from flowstudy.rundir import RunPaths
from flowstudy.train.batcher import Batcher
from flowstudy.train.config import TrainConfig
from flowstudy.train.eigen_step import eigen_space
from flowstudy.train.ema import EMA
from flowstudy.train.graph import make_train_step
from flowstudy.train.optim import make_optimizer
from flowstudy.train.precision import autocast_for, matmul_precision
from flowstudy.train.progress import progress_bar
from flowstudy.train.rows import base_field_for, load_rows
from flowstudy.train.selection import choose_run_scale, validation_nll
from flowstudy.train.step import StepSpace
from flowstudy.train.stopping import StopRequest, TrainingInterrupted, stop_on_signals
from flowstudy.train.trackers import make_trackers
from flowstudy.version import versions

INIT_LOCK = threading.Lock()
"""Held while a run seeds torch's global generator and draws its initial weights from it."""

LOG_EVERY = 25  # optimiser steps between loss syncs / metric records


@dataclass
class TrainResult:
    """How a :meth:`Trainer.fit` ended: steps done of the total, validation losses (flow-matching
    MSE in standardised space, EMA weights; ``best_val_loss`` is the best selection score, the
    validation NLL per dimension with ``select_by = "nll"``), early stop, wall-clock seconds."""

    run_dir: Path
    steps: int
    total_steps: int
    best_val_loss: float
    last_val_loss: float
    stopped_early: bool
    seconds: float


class Trainer:
    """Train ``config`` into ``run_dir``. Call :meth:`fit` (``resume=True`` continues last.pt).

    ``eigenbasis=False``: subspace residuals train in data coordinates; ``leading=False``: their
    eigen-coordinate steps keep all D coordinates (:mod:`flowstudy.train.eigen_step`). ``stop``
    is the run's :class:`~flowstudy.train.stopping.StopRequest`: set it (``trainer.stop.request()``)
    and the run stops at its step's end with a resumable last.pt.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        callbacks: list[Any] = (),
        progress: bool = True,
        eigenbasis: bool = True,
        leading: bool = True,
    ):
        self.config = config.validate()
        self.eigenbasis, self.leading = eigenbasis, leading
        self.paths = RunPaths(Path(run_dir))
        self.callbacks = list(callbacks)
        self.progress = progress
        self.device = resolve_device(config.device)
        self.stop = StopRequest()

    # ----------------------------------------------------------------- setup
    def prepare(self, resume: bool) -> dict | None:
        """Check the run directory (a run to resume, or none yet), set up, write the run's files.
        Returns the checkpoint resumed from (None for a fresh run)."""
        resume_state = self._start_state(resume)
        self.setup(resume_state)
        self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.paths.config, {**self.config.to_dict(), "versions": versions(), "total_steps": self.total_steps})
        self.standardizer.save(self.paths.standardizer)
        return resume_state

    def setup(self, resume_state: dict | None) -> None:
        """Data, flow, base field, network, optimiser, EMA and batcher; restored from ``resume_state``."""
        from flowstudy.flows import create_flow
        from flowstudy.models import create_model

        cfg = self.config
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        rows = load_rows(cfg, self.paths.root, self.device, resume_state)
        self.standardizer, self.dim, self.train_set, self.val_set = rows.standardizer, rows.dim, rows.train_set, rows.val_set
        self.train_x1, self.train_x0, self.val_x1, self.val_x0 = rows.train_x1, rows.train_x0, rows.val_x1, rows.val_x0
        self.flow = create_flow(cfg.flow, **cfg.flow_options)
        self.augmentations = parse_augmentations(cfg.aug)
        self.base = base_field_for(cfg, self.train_x1, self.flow, self.augmentations, resume_state)
        residual = cfg.residual()
        net_dim = effective_rank(residual["rank"], self.dim) if residual is not None and residual["reads"] == "subspace" else self.dim
        # Weights are drawn on the CPU from torch's global generator, seeded here; the lock keeps runs
        # that set up in other threads (the study's "threads" executor) from drawing from it meanwhile.
        # Only the CPU generator: torch.manual_seed would also reseed the default CUDA generator, which
        # any graph being recorded in another thread holds in capture mode.
        with INIT_LOCK:
            torch.random.default_generator.manual_seed(cfg.seed)
            self.model = create_model(cfg.arch, input_dim=net_dim, **cfg.model)
            if residual is not None:  # the network, confined to the base's top principal subspace
                self.model = SubspaceNet.around(self.model, self.base, **residual)
        self.model = self.model.to(self.device)
        self.total_steps = cfg.total_steps(self.train_x1.shape[0])
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg, self.total_steps, self.device)
        self.ema = EMA(self.model, cfg.ema_decay)
        # The velocity field the loss sees: the network, plus the base field when the run has one.
        self.field = compose_field(self.model, self.base)
        self.ema_field = compose_field(self.ema.model, self.base)
        self.set_step_space(self.eigenbasis, self.leading)
        if cfg.compile is not None:  # fused kernels for the step (eager or captured); validation stays eager
            self.space.field = torch.compile(self.space.field, mode=cfg.compile, dynamic=False)
        self.batcher = Batcher(self.train_x1.shape[0], cfg.batch_size, self.generator)
        self.step, self.best_val, self.bad_evals, self.last_val = 0, math.inf, 0, math.nan
        self.pending_losses: list[torch.Tensor] = []  # losses since the last record, on the device
        if resume_state is not None:
            self._restore(resume_state)

    def set_step_space(self, eigen: bool = True, leading: bool = True) -> None:
        """What the step works on (:attr:`space`): the run's rows and field, or, with ``eigen``, a
        subspace residual's eigen-coordinates where the run allows them (cut to the k leading
        ones with ``leading``): :func:`~flowstudy.train.eigen_step.eigen_space`."""
        self.space = StepSpace(self.train_x1, self.train_x0, self.model, self.base, self.field)
        if eigen:
            self.space = eigen_space(self.space, self.flow, self.augmentations, leading=leading, seed=self.config.seed)

    # ----------------------------------------------------------------- state
    def _restore(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise CheckpointError(f"{self.paths.last}: weights do not fit architecture '{self.config.arch}': {err}") from err
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.batcher.load_state_dict(state["batcher"])
        # RNG states are CPU ByteTensors whatever the generator's device (map_location moved them)
        self.generator.set_state(state["rng"]["generator"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.step, self.best_val, self.bad_evals = state["step"], state["best_val"], state["bad_evals"]
        self.last_val = state.get("last_val", math.nan)
        self.pending_losses = [loss.to(self.device) for loss in state.get("pending_losses", [])]

    def checkpoint_state(self, finished: bool) -> dict[str, Any]:
        """Everything a checkpoint holds: weights, EMA, optimiser, schedule, batcher, RNGs, counters."""
        return {
            "arch": self.model.arch,
            "model_config": self.model.config,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "batcher": self.batcher.state_dict(),
            "rng": {"generator": self.generator.get_state(), "torch": torch.get_rng_state()},
            "step": self.step,
            "total_steps": self.total_steps,
            "best_val": self.best_val,
            "last_val": self.last_val,
            "bad_evals": self.bad_evals,
            "pending_losses": [loss.detach().float().cpu() for loss in self.pending_losses],  # so a resumed curve is identical
            "finished": finished,
            "config": self.config.to_dict(),
            "standardizer": self.standardizer.state_dict(),
            "base_field": self.base.state() if self.base is not None else None,
            "residual": self.config.residual(),
        }

    def _say(self, text: str) -> None:
        """A line for the user before the progress bar (only when it is shown)."""
        if self.progress:
            from flowstudy.console import make_console

            make_console(stderr=True).print(text, highlight=False)

    # ----------------------------------------------------------------- loop
    def fit(self, resume: bool = False) -> TrainResult:
        """Train to the end (or an early stop); ``resume=True`` continues from ``last.pt``."""
        if not resume and self.config.recipe == "auto":  # flowstudy.train.recipe, once the directory is known fresh
            from flowstudy.train.recipe import choose_recipe

            self._start_state(False)
            self.config = choose_recipe(self.config, self.paths.root, trainer=type(self), message=self._say).validate()
        self.prepare(resume)
        trackers = make_trackers(self.config.tracker, self.paths.root, self.config.to_dict(), self.step if resume else None)
        started = time.perf_counter()
        stopped_early = False
        try:
            with stop_on_signals(self.stop), matmul_precision(self.device, self.config.precision), progress_bar(self.progress, self.total_steps, self.step) as bar:
                stopped_early = self._loop(trackers, bar)
        finally:
            for tracker in trackers:
                tracker.close()
        if self.config.residual_scales:  # the residual scale α of best.pt, by validation NLL
            choose_run_scale(self.paths, self.val_x1, self.config.residual_scales, seed=self.config.seed, device=self.device)
        result = TrainResult(
            self.paths.root, self.step, self.total_steps, self.best_val, self.last_val, stopped_early, time.perf_counter() - started
        )
        for cb in self.callbacks:
            getattr(cb, "on_end", lambda *_: None)(self, result)
        return result

    def _loop(self, trackers, bar) -> bool:
        cfg, pending = self.config, self.pending_losses
        tic, tic_step = time.perf_counter(), self.step
        self.step_fn = make_train_step(self, message=lambda text: print(text, file=sys.stderr))  # train_step, or its graph
        while self.step < self.total_steps:
            loss, grad_norm = self.step_fn()
            pending.append(loss.detach())
            self.step += 1
            at_val = self.step % cfg.val_every == 0 or self.step == self.total_steps
            if self.stop.requested:
                self.check_finite(torch.stack(pending).float().cpu())
                save_checkpoint(self.paths.last, self.checkpoint_state(finished=False))
                raise TrainingInterrupted(
                    f"interrupted by {self.stop.name} at step {self.step}/{self.total_steps}; "
                    f"a resumable checkpoint is in {self.paths.last} (continue with --resume)"
                )
            if self.step % LOG_EVERY == 0 or at_val:
                losses = torch.stack(pending).float().cpu()
                self.check_finite(losses)
                pending.clear()
                rate = (self.step - tic_step) / max(time.perf_counter() - tic, 1e-9)
                tic, tic_step = time.perf_counter(), self.step
                record = {"loss": float(losses.mean()), "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), "steps_per_s": rate}
                for tracker in trackers:
                    tracker.log(self.step, record)
                bar(self.step, record["loss"], rate, self.last_val)
                for cb in self.callbacks:
                    getattr(cb, "on_step", lambda *_: None)(self, self.step, record["loss"])
            if at_val:
                stop = self.validate_and_save(trackers)
                bar(self.step, record["loss"], rate, self.last_val)
                if stop:
                    return True
        return False

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on the next batch; returns (logged loss, gradient norm before clipping)."""
        x1, x0 = self.space.batch(self.batcher.next(), self.augmentations, self.generator)  # [B, D'] each
        try:
            loss = self.space.loss(self.flow, x1, x0, self.generator, self.config.precision)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        except torch.cuda.OutOfMemoryError as err:
            raise TrainingError(
                f"CUDA out of memory at batch size {self.config.batch_size}; try --batch-size {max(1, self.config.batch_size // 2)}"
            ) from err
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        return self.space.logged(loss), grad_norm

    def check_finite(self, losses: torch.Tensor) -> None:
        """TrainingError naming the first non-finite loss's step (``losses``: the last steps', in order)."""
        bad = (~torch.isfinite(losses)).nonzero()
        if bad.numel():
            first = self.step - losses.numel() + int(bad[0]) + 1
            kept = (
                f"the last good checkpoint is {self.paths.last} (step {load_checkpoint(self.paths.last)['step']})"
                if self.paths.last.exists()
                else "no checkpoint had been written yet"
            )
            raise TrainingError(f"loss became non-finite (NaN/inf) at step {first}; training stopped; {kept}. Try a lower --lr.")

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean flow loss of the EMA weights on the held-out rows, with fixed noise and times."""
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed + 10_007)
        total, count = 0.0, 0
        for _ in range(self.config.val_repeats):
            for start in range(0, self.val_x1.shape[0], self.config.batch_size):
                x1 = self.val_x1[start : start + self.config.batch_size]
                x0 = self.val_x0[start : start + self.config.batch_size] if self.val_x0 is not None else None
                with autocast_for(self.device, self.config.precision):
                    loss = self.flow.loss(self.ema_field, x1, x0, generator=generator)
                total += float(loss) * x1.shape[0]
                count += x1.shape[0]
        return total / count

    def validate_and_save(self, trackers) -> bool:
        """Validation, best/last checkpoints, early stopping. Returns True to stop early."""
        self.last_val = self.validation_loss()
        record = {"val_loss": self.last_val}
        score = self.last_val
        if self.config.select_by == "nll":
            score = record["val_nll"] = validation_nll(self.ema_field, self.val_x1, seed=self.config.seed)
        improved = score < self.best_val
        if improved:
            self.best_val, self.bad_evals = score, 0
        else:
            self.bad_evals += 1
        patience = self.config.patience
        stop = patience is not None and self.bad_evals >= patience
        state = self.checkpoint_state(finished=stop or self.step >= self.total_steps)
        if improved:
            save_checkpoint(self.paths.best, state)
        save_checkpoint(self.paths.last, state)
        for tracker in trackers:
            tracker.log(self.step, {**record, f"best_val_{self.config.select_by}": self.best_val})
        for cb in self.callbacks:
            getattr(cb, "on_validation", lambda *_: None)(self, self.step, self.last_val)
        return stop

    # ----------------------------------------------------------------- run-dir checks
    def _start_state(self, resume: bool) -> dict | None:
        """The checkpoint to resume from (None: a fresh run); CheckpointError where the run directory disagrees."""
        root, last = self.paths.root, self.paths.last
        if not resume:
            if last.exists() or self.paths.best.exists():
                raise CheckpointError(f"{root} already holds a run; continue it with --resume or choose another --out")
            return None
        if not last.exists():
            raise CheckpointError(f"{root}: nothing to resume (no checkpoints/last.pt)")
        state = load_checkpoint(last, map_location=self.device)
        if state.get("finished"):
            raise CheckpointError(f"{root}: the run already finished at step {state['step']} of {state['total_steps']}; nothing to resume")
        return state


__all__ = ["LOG_EVERY", "TrainResult", "Trainer", "TrainingInterrupted"]
