"""The trainer: AdamW, warm-up + cosine schedule, EMA, validation, checkpoints, exact resume.

One loop, extended by callbacks (objects with any of ``on_step(trainer, step, loss)``,
``on_validation(trainer, step, val_loss)``, ``on_end(trainer, result)``). Everything random
flows from one torch.Generator on the training device, whose state travels in each checkpoint,
so an interrupted run resumed from ``last.pt`` retraces the uninterrupted one.
"""

from __future__ import annotations

import math
import platform
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import flowstudy
from flowstudy.data import Standardizer, apply_augmentations, parse_augmentations
from flowstudy.data.resolve import load_config_splits
from flowstudy.errors import CheckpointError, TrainingError
from flowstudy.data.augment import ROTATION_EQUIVARIANT
from flowstudy.flows.couplings import Independent, Paired
from flowstudy.flows.gaussian_base import DiagonalGaussianBase, GaussianBaseField, WithBaseField
from flowstudy.flows.method import velocity_loss
from flowstudy.flows.subspace import SubspaceNet, compose_field, effective_rank
from flowstudy.io import atomic_write_json
from flowstudy.checkpoint import load_checkpoint, save_checkpoint
from flowstudy.train.config import TrainConfig
from flowstudy.train.ema import EMA
from flowstudy.train.graph import make_train_step
from flowstudy.rundir import RunPaths
from flowstudy.devices import resolve_device
from flowstudy.train.schedule import lr_factor
from flowstudy.train.selection import choose_scale, validation_nll
from flowstudy.train.trackers import make_trackers

INIT_LOCK = threading.Lock()
"""Held while a run seeds torch's global generator and draws its initial weights from it."""

LOG_EVERY = 25  # optimiser steps between loss syncs / metric records


class TrainingInterrupted(TrainingError):
    """Ctrl-C or SIGTERM: a resumable last.pt was written."""


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


class Batcher:
    """Epoch-wise random permutations of N rows; batches of exactly ``batch_size`` rows.

    A permutation's tail shorter than a batch is skipped (a different tail each epoch).
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.perm = torch.randperm(n, generator=generator, device=generator.device)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator, device=self.generator.device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm.cpu(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"].to(self.generator.device), int(state["pos"])


class Trainer:
    """Train ``config`` into ``run_dir``. Call :meth:`fit` (``resume=True`` continues last.pt)."""

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
        self.eigenbasis = eigenbasis  # False: subspace residuals train in data coordinates (_step_space)
        self.leading = leading  # False: eigen-coordinate steps keep all D coordinates (_step_space)
        self.paths = RunPaths(Path(run_dir))
        self.callbacks = list(callbacks)
        self.progress = progress
        self.device = resolve_device(config.device)
        self._stop_signal: int | None = None

    # ----------------------------------------------------------------- setup
    def _setup(self, resume_state: dict | None) -> None:
        from flowstudy.flows import create_flow
        from flowstudy.models import create_model

        cfg = self.config
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self._load_data(resume_state)
        self.flow = create_flow(cfg.flow, **cfg.flow_options)
        self.augmentations = parse_augmentations(cfg.aug)
        self.base = self._base_field(resume_state)
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
        # fused AdamW: one kernel per step on CUDA, where these small networks are launch-bound;
        # capturable (step counters on the device) when the step is replayed as a CUDA graph
        fused = {"fused": True, "capturable": cfg.graph} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, **fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, cfg.warmup_frac, cfg.min_lr_frac)
        )
        self.ema = EMA(self.model, cfg.ema_decay)
        # The velocity field the loss sees: the network, plus the base field when the run has one.
        self.field = compose_field(self.model, self.base)
        self.ema_field = compose_field(self.ema.model, self.base)
        self._step_space(self.eigenbasis, self.leading)
        if cfg.compile is not None:  # fused kernels for the step (eager or captured); validation stays eager
            self.step_field = torch.compile(self.step_field, mode=cfg.compile, dynamic=False)
        self.batcher = Batcher(self.train_x1.shape[0], cfg.batch_size, self.generator)
        self.step, self.best_val, self.bad_evals, self.last_val = 0, math.inf, 0, math.nan
        self._pending: list[torch.Tensor] = []
        if resume_state is not None:
            self._restore(resume_state)

    def _step_space(self, eigen: bool, leading: bool = True) -> None:
        """The rows and field the training step works on (``step_x1``, ``step_x0``, ``step_net``,
        ``step_base``, ``step_field``), and how its loss maps to the run's (:attr:`step_loss_scale`,
        ``step_loss_offset``).

        A subspace residual that reads its k coordinates trains in its base's eigen-coordinates
        w = Rᵀx when ``eigen`` and the run allows it (:meth:`eigenbasis_refusal`): the rows are
        rotated once, the base field is elementwise there and the network reads the first k axes,
        so a step needs no [B, D] x [D, D] product. Paths, couplings (distances) and the noise and
        mixup augmentations commute with the rotation, and the loss is rotation-invariant: a step
        has the loss and gradients of the data-space step on the rotated draws (a rotation of
        N(0, I) noise is N(0, I)). Validation, checkpoints and sampling stay in data coordinates.

        There, with ``leading`` and where the coupling pairs rows independently of their values
        (:meth:`leading_refusal`), the step keeps only the k leading coordinates (:meth:`_leading_coordinates`).
        Elsewhere the step's rows and field are the run's own."""
        self.step_x1, self.step_x0, self.step_net, self.step_base, self.step_field = self.train_x1, self.train_x0, self.model, self.base, self.field
        self.step_loss_offset = 0.0
        if eigen and self.eigenbasis_refusal() is None:
            self.step_net, self.step_base = self.model.in_eigenbasis(), self.base.in_eigenbasis()
            self.step_field = WithBaseField(self.step_net, self.step_base)
            self.step_x1 = self.train_x1 @ self.step_rotation
            self.step_x0 = self.train_x0 @ self.step_rotation if self.train_x0 is not None else None
            if leading and self.leading_refusal() is None:
                self._leading_coordinates()

    def leading_refusal(self) -> str | None:
        """Why an eigen-coordinate step cannot keep only the k leading coordinates (None: it can)."""
        if not isinstance(self.flow.coupling, (Independent, Paired)):
            return f"the {type(self.flow.coupling).__name__} coupling pairs rows by distances over every coordinate"
        if self.model.rank >= self.dim:
            return "the subspace is the whole space"
        return None

    def _leading_coordinates(self) -> None:
        """Step on the k leading eigen-coordinates alone: [B, k] draws, rows, base and loss.

        Outside them the network adds nothing and the velocity is the base field's, which has no
        parameters. With draws that pair rows independently of their values, every path and
        augmentation here is coordinatewise, so those D - k coordinates add a term to the loss that
        does not depend on the weights, and the gradient is that of the k coordinates' squared
        error. The step's loss (a mean over k coordinates) is scaled by k / D, so the gradient (and
        so clipping) is the whole step's for the same draws of those coordinates. The logged loss
        adds the D - k coordinates' term as its expectation (:meth:`_complement_loss`), so it
        estimates what the whole step's loss does. D / k times fewer draws and elementwise work.
        """
        k, full = self.model.rank, self.step_base
        self.step_loss_offset = self._complement_loss(full, k)
        self.step_base = full.leading(k)
        self.step_field = WithBaseField(self.step_net, self.step_base)
        self.step_x1 = self.step_x1[:, :k].contiguous()
        self.step_x0 = self.step_x0[:, :k].contiguous() if self.step_x0 is not None else None

    @torch.no_grad()
    def _complement_loss(self, base: DiagonalGaussianBase, k: int, samples: int = 8192, chunk: int = 1024) -> float:
        """The whole eigen-coordinate step's loss from coordinates k.. (the base field alone there):
        its mean over ``samples`` of the step's draws, from a generator of its own (the run's stream
        is untouched). A constant of the run; its Monte Carlo error is ~1 % of it."""
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed + 48_611)
        rows, total, chunks = self.step_x1.shape[0], 0.0, samples // chunk
        for _ in range(chunks):
            idx = torch.randint(rows, (chunk,), generator=generator, device=self.device)
            x1 = apply_augmentations(self.step_x1[idx], self.augmentations, generator)
            sample = self.flow.sample_path(x1, self.step_x0[idx] if self.step_x0 is not None else None, generator)
            v = base(sample.x_t[:, k:], sample.t, dims=slice(k, None))  # [chunk, D - k]
            total += float(velocity_loss(v, sample.u_t[:, k:], self.flow.loss_weight))  # a mean over D - k coordinates
        return total / chunks * (self.dim - k) / self.dim

    @property
    def step_loss_scale(self) -> float:
        """k / D when the step keeps the k leading eigen-coordinates (its loss is their mean), else 1."""
        return self.step_x1.shape[1] / self.dim

    @property
    def step_rotation(self) -> torch.Tensor | None:
        """R [D, D] with step rows = rows @ R when the step works in eigen-coordinates, else None."""
        return self.step_base.eigvecs if isinstance(self.step_base, DiagonalGaussianBase) else None

    def eigenbasis_refusal(self) -> str | None:
        """Why this run's step cannot work in the base's eigen-coordinates (None: it can)."""
        if not isinstance(self.model, SubspaceNet):
            return "the network is not a subspace residual"
        if self.model.reads != "subspace":
            return "the residual reads the whole state (residual_input = 'full')"
        fixed = [name for name, _ in self.augmentations if name not in ROTATION_EQUIVARIANT]
        return f"augmentation {fixed[0]} does not commute with a rotation" if fixed else None

    def _base_field(self, resume_state: dict | None):
        """The run's Gaussian base field (None without one): restored on resume, else fitted."""
        if self.config.base_field == "none":
            return None
        if resume_state is not None and resume_state.get("base_field") is not None:
            return GaussianBaseField.from_state(resume_state["base_field"], self.flow.path).to(self.device)
        # base_fit "augmented": fitted to what the network is trained on, the rows as augmented (4
        # draws each, from a generator of its own so the training stream is the same with or
        # without a base); "train": to the training rows, the Gaussian fit held-out NLL compares with.
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed + 31_337)
        raw = not self.augmentations or self.config.base_fit == "train"
        rows = self.train_x1 if raw else torch.cat(
            [apply_augmentations(self.train_x1, self.augmentations, generator) for _ in range(4)]
        )
        return GaussianBaseField.fit(rows, self.flow.path).to(self.device)

    def _load_data(self, resume_state: dict | None) -> None:
        cfg = self.config
        if cfg.flow == "reflow":
            from flowstudy.train.reflow import load_reflow_pairs

            pairs = load_reflow_pairs(cfg, self.paths.root, self.device)
            self.standardizer, self.dim = pairs.standardizer, pairs.x1.shape[1]
            self.train_x0, self.train_x1 = pairs.x0, pairs.x1
            self.val_x0, self.val_x1 = pairs.val_x0, pairs.val_x1
            return
        train, val = load_config_splits(cfg)
        self.train_set, self.val_set = train, val
        self.dim = train.dim
        if resume_state is not None:
            self.standardizer = Standardizer.from_state_dict(resume_state["standardizer"])
        else:
            self.standardizer = Standardizer.fit(torch.from_numpy(train.embeddings), floor_ratio=cfg.std_floor)
        # Data held on the device: batches are index lookups, no loader overhead.
        self.train_x1 = self.standardizer.transform(torch.from_numpy(train.embeddings)).to(self.device)
        self.val_x1 = self.standardizer.transform(torch.from_numpy(val.embeddings)).to(self.device)
        self.train_x0 = self.val_x0 = None

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
        self._pending = [loss.to(self.device) for loss in state.get("pending_losses", [])]

    # ----------------------------------------------------------------- state
    def _state(self, finished: bool) -> dict[str, Any]:
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
            "pending_losses": [loss.detach().float().cpu() for loss in self._pending],  # so a resumed curve is identical
            "finished": finished,
            "config": self.config.to_dict(),
            "standardizer": self.standardizer.state_dict(),
            "base_field": self.base.state() if self.base is not None else None,
            "residual": self.config.residual(),
        }

    def _write_run_files(self) -> None:
        self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.paths.config, {**self.config.to_dict(), "versions": versions(), "total_steps": self.total_steps})
        self.standardizer.save(self.paths.standardizer)

    def _say(self, text: str) -> None:
        """A line for the user before the progress bar (only when it is shown)."""
        if self.progress:
            from flowstudy.console import make_console

            make_console(stderr=True).print(text, highlight=False)

    # ----------------------------------------------------------------- loop
    def fit(self, resume: bool = False) -> TrainResult:
        """Train to the end (or an early stop); ``resume=True`` continues from ``last.pt``."""
        resume_state = self._resume_state() if resume else self._check_fresh()
        if resume_state is None and self.config.recipe == "auto":  # flowstudy.train.recipe
            from flowstudy.train.recipe import choose_recipe

            self.config = choose_recipe(self.config, self.paths.root, message=self._say).validate()
        self._setup(resume_state)
        self._write_run_files()
        trackers = make_trackers(self.config.tracker, self.paths.root, self.config.to_dict(), self.step if resume else None)
        started = time.perf_counter()
        stopped_early = False
        try:
            with self._signals(), matmul_precision(self.device, self.config.precision), _progress(self.progress, self.total_steps, self.step) as bar:
                stopped_early = self._loop(trackers, bar)
        finally:
            for tracker in trackers:
                tracker.close()
        if self.config.residual_scales:
            self._choose_scale()
        result = TrainResult(
            self.paths.root, self.step, self.total_steps, self.best_val, self.last_val, stopped_early, time.perf_counter() - started
        )
        for cb in self.callbacks:
            getattr(cb, "on_end", lambda *_: None)(self, result)
        return result

    def _loop(self, trackers, bar) -> bool:
        cfg = self.config
        pending = self._pending  # losses since the last record, kept on the device
        tic, tic_step = time.perf_counter(), self.step
        self._step_fn = make_train_step(self, message=lambda text: print(text, file=sys.stderr))
        while self.step < self.total_steps:
            loss, grad_norm = self._step_fn()  # _train_step, or its CUDA-graph replay (flowstudy.train.graph)
            pending.append(loss.detach())
            self.step += 1
            at_val = self.step % cfg.val_every == 0 or self.step == self.total_steps
            if self._stop_signal is not None:
                self._check_finite(torch.stack(pending).float().cpu())
                save_checkpoint(self.paths.last, self._state(finished=False))
                raise TrainingInterrupted(
                    f"interrupted by {signal.Signals(self._stop_signal).name} at step {self.step}/{self.total_steps}; "
                    f"a resumable checkpoint is in {self.paths.last} (continue with --resume)"
                )
            if self.step % LOG_EVERY == 0 or at_val:
                losses = torch.stack(pending).float().cpu()
                self._check_finite(losses)
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
                stop = self._validate_and_save(trackers)
                bar(self.step, record["loss"], rate, self.last_val)
                if stop:
                    return True
        return False

    def _train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.batcher.next()
        x1 = apply_augmentations(self.step_x1[idx], self.augmentations, self.generator)
        x0 = self.step_x0[idx] if self.step_x0 is not None else None
        try:
            with autocast_for(self.device, self.config.precision):
                loss = self.flow.loss(self.step_field, x1, x0, generator=self.generator)
            if self.step_loss_scale != 1.0:  # the k leading coordinates' share of the loss (_leading_coordinates)
                loss = loss * self.step_loss_scale
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
        return (loss.detach() + self.step_loss_offset if self.step_loss_offset else loss), grad_norm

    def _check_finite(self, losses: torch.Tensor) -> None:
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

    def _validate_and_save(self, trackers) -> bool:
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
        finished = stop or self.step >= self.total_steps
        state = self._state(finished=finished)
        if improved:
            save_checkpoint(self.paths.best, state)
        save_checkpoint(self.paths.last, state)
        for tracker in trackers:
            tracker.log(self.step, {**record, f"best_val_{self.config.select_by}": self.best_val})
        for cb in self.callbacks:
            getattr(cb, "on_validation", lambda *_: None)(self, self.step, self.last_val)
        return stop

    def _choose_scale(self) -> None:
        """Choose the residual scale α of the best checkpoint's EMA field by validation NLL; write it
        into best.pt and last.pt (``residual["scale"]``) and the scores into scale_selection.json."""
        from flowstudy.run import load_run

        run = load_run(self.paths.root, "best", device=self.device)
        alpha, scores = choose_scale(run.model, self.val_x1, self.config.residual_scales, seed=self.config.seed)
        for path in (self.paths.best, self.paths.last):
            if path.exists():
                state = load_checkpoint(path)
                state["residual"] = {**state["residual"], "scale": alpha}
                save_checkpoint(path, state)
        atomic_write_json(self.paths.root / "scale_selection.json", {"chosen": alpha, "val_nll_per_dim": {str(a): v for a, v in scores.items()}})

    # ----------------------------------------------------------------- run-dir checks
    def _check_fresh(self) -> None:
        if self.paths.last.exists() or self.paths.best.exists():
            raise CheckpointError(
                f"{self.paths.root} already holds a run; continue it with --resume or choose another --out"
            )
        return None

    def _resume_state(self) -> dict:
        if not self.paths.last.exists():
            raise CheckpointError(f"{self.paths.root}: nothing to resume (no checkpoints/last.pt)")
        state = load_checkpoint(self.paths.last, map_location=self.device)
        if state.get("finished"):
            raise CheckpointError(
                f"{self.paths.root}: the run already finished at step {state['step']} of {state['total_steps']}; nothing to resume"
            )
        return state

    @contextmanager
    def _signals(self):
        """SIGINT/SIGTERM set a flag; the loop writes last.pt and stops at the step's end. In a thread
        other than the main one (which alone receives signals) :func:`stop_threaded_runs` sets it."""
        if threading.current_thread() is not threading.main_thread():
            with _THREADED_LOCK:
                _THREADED_RUNS.add(self)
                if _threaded_stop is not None:
                    self._stop_signal = _threaded_stop
            try:
                yield
            finally:
                with _THREADED_LOCK:
                    _THREADED_RUNS.discard(self)
            return

        def handler(signum, _frame):
            self._stop_signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


_THREADED_LOCK = threading.Lock()
_THREADED_RUNS: set[Trainer] = set()  # runs training in threads other than the main one
_threaded_stop: int | None = None


def stop_threaded_runs(signum: int | None = signal.SIGINT) -> None:
    """Make every run that trains, or starts training, in a thread other than the main one stop at
    its step's end with a resumable last.pt, as ``signum`` does to a run in the main thread. ``None``
    lifts the request for runs started from then on (an executor's next batch of tasks)."""
    global _threaded_stop
    with _THREADED_LOCK:
        _threaded_stop = signum
        if signum is not None:
            for run in _THREADED_RUNS:
                run._stop_signal = signum


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only; never on biases, norms, A_log or D (as mamba_ssm does)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or getattr(p, "_no_weight_decay", False) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class TF32Matmuls:
    """Inside the block, CUDA matrix products and convolutions of float32 tensors run on TF32
    tensor cores (inputs rounded to a 10-bit mantissa, float32 accumulation); the previous
    settings come back when the last block ends. Re-entrant, across threads too (runs trained in
    threads of one process), and reusable as one object (as torch.autocast is). The flags are
    process-wide: a float32 run in one thread beside a tf32 run in another gets TF32 products in
    its eager parts; a CUDA graph keeps the kernels chosen while it was captured."""

    _lock = threading.Lock()
    _depth = 0  # blocks open in this process
    _saved: tuple[bool, bool] = (False, False)  # the flags before the first of them

    def __enter__(self) -> None:
        cls = TF32Matmuls
        with cls._lock:
            if cls._depth == 0:
                cls._saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            cls._depth += 1

    def __exit__(self, *exc) -> None:
        cls = TF32Matmuls
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = cls._saved


def matmul_precision(device: torch.device, precision: str):
    """TF32 products (:class:`TF32Matmuls`) on CUDA for precision "tf32"; else no change. Wraps a
    whole step, backward included, or a whole fit."""
    return TF32Matmuls() if device.type == "cuda" and precision == "tf32" else nullcontext()


def autocast_for(device: torch.device, precision: str):
    """What a network's forward runs under: bf16 autocast on CUDA for "bf16", TF32 products on CUDA
    for "tf32", plain fp32 everywhere else (and for the loss's reduction). Reusable."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return matmul_precision(device, precision)


def versions() -> dict[str, str]:
    import numpy

    return {"flowstudy": flowstudy.__version__, "torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


@contextmanager
def _progress(enabled: bool, total: int, start: int):
    """Yields ``update(step, loss, steps_per_s, val_loss)``; a rich progress bar with ETA when enabled.
    The training loss is that of the augmented rows the steps see; the validation loss that of
    the plain held-out rows (the two differ by the augmentation's share when it is strong)."""
    if not enabled:
        yield lambda *_: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]:.4f}  {task.fields[rate]:.1f} steps/s"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("train", total=total, completed=start, loss=float("nan"), val=float("nan"), rate=0.0)
        yield lambda step, loss, rate, val: progress.update(task, completed=step, loss=loss, rate=rate, val=val)


__all__ = ["Batcher", "TrainResult", "Trainer", "TrainingInterrupted", "resolve_device", "stop_threaded_runs", "versions"]
