"""The trainer's step captured as one CUDA graph: the fast path beside ``Trainer.train_step``.

Both take the step's maths from :mod:`flowstudy.train.step` (the batch, the loss, the logged
loss); this module adds only how the captured step keeps its state on the device. The networks
here are small enough that an eager step is bound by kernel launches (an MLP step is ~1.5 GFLOP
but ~400 launches). :class:`CapturedStep` records the whole step once —

    batch indices   a slice of the epoch's permutation at a device-side position counter
    augmentation, noise, t   drawn from the run's own generator (registered with the graph)
    forward, loss, backward, gradient clipping (foreach, no host sync)
    learning rate   read from a device table ``lr[step]`` of the run's schedule
    AdamW           fused and capturable: its step counters live on the device
    EMA             decay ``min(decay, (1 + n) / (10 + n))`` from a device counter, foreach ops

— and replays it per step. The host keeps the eager bookkeeping in step (the batcher's
permutation and position, the scheduler's step, the EMA's update count), so checkpoints, exact
resume, validation and early stopping are the trainer's own. Per epoch the host draws the next
permutation eagerly (``torch.randperm`` is not capturable), exactly when the eager path does,
so both paths consume the generator in the same order. The loss is copied out per step and read
back only when logged.

The exact OT coupling solves its assignment on the host (scipy). Its step is captured as two
graphs around that solve (:func:`split_pairing`): the first draws the batch and x0 and computes the
[B, B] float64 cost; the host copies the cost out, solves it and writes the permutation into a
device buffer; the second pairs the rows and runs the rest of the step. The draws, the cost and so
the pairing are the eager step's, in the same order.

Not capturable, and then the step runs eagerly with a message: Sinkhorn pairing (its NaN check
syncs), mixup (its Beta draws come from numpy), and any network whose forward syncs with the host
(the capture's error is in the message).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Sequence

import torch
from torch import Tensor

from flowstudy.cudagraphs import capture
from flowstudy.train.schedule import lr_factor

WARMUP_STEPS = 2
"""Eager steps on a side stream before capture (lazy state, library handles); undone afterwards."""

HOST_AUGMENTATIONS = ("mixup",)
"""Augmentations that draw on the host (numpy Beta draws)."""

def host_work(flow, augmentations) -> str | None:
    """Why a step with this flow and these augmentations needs the host every step (None: it does not)."""
    if flow.coupling.host_work is not None:  # each coupling says whether it needs the host
        return flow.coupling.host_work
    host_augs = [name for name, _ in augmentations if name in HOST_AUGMENTATIONS]
    return f"augmentation {host_augs[0]} draws on the host" if host_augs else None


def split_pairing(flow, augmentations):
    """The coupling when a step's only host work is an assignment solved from a cost matrix (exact
    OT, ``coupling.cost`` / ``coupling.assign``): such a step is captured as two graphs around the
    host's solve. None otherwise."""
    coupling = flow.coupling
    if not (callable(getattr(coupling, "cost", None)) and callable(getattr(coupling, "assign", None))):
        return None
    return coupling if not any(name in HOST_AUGMENTATIONS for name, _ in augmentations) else None


class HostPairing:
    """One run's exact-OT pairing between the two parts of a step (module docstring):
    :meth:`draw` (device: x0 and the [B, B] cost), :meth:`solve` (host), :meth:`rows` (device: the
    paired rows, for :attr:`flow`, the run's flow with the pairing taken as given). The step's
    first part draws what the eager step's ``sample_path`` draws first, x0, so the draws and the
    pairing are the eager step's."""

    def __init__(self, flow, batch: int, device: torch.device):
        self.coupling, self.flow = flow.coupling, flow.with_pairs_given()
        self.perm = torch.arange(batch, device=device)  # [B] x0 row i pairs with x1 row perm[i]

    @classmethod
    def of(cls, flow, augmentations, batch: int, device: torch.device) -> HostPairing | None:
        """The pairing of a run whose step splits around its host assignment (:func:`split_pairing`), else None."""
        return cls(flow, batch, device) if split_pairing(flow, augmentations) is not None else None

    def draw(self, x1: Tensor, generator: torch.Generator) -> None:
        """Device only: x0 for the rows x1 [B, D] and their cost."""
        self.x0, self.x1 = self.flow.draw_source(x1, generator), x1
        self.cost = self.coupling.cost(self.x0, self.x1)

    def host_cost(self) -> Tensor:
        """The cost copied to the host, waiting for it on the calling thread's current stream (a
        capture's warm-up runs on a side stream: copy on the thread that launched the draws)."""
        return self.cost.cpu()

    def solve(self, cost: Tensor) -> Tensor:
        """On the host: the permutation of :meth:`host_cost`'s copy, [B] long on the CPU."""
        return self.coupling.assign(cost)

    def rows(self) -> tuple[Tensor, Tensor]:
        """Device only: (x1 paired to x0, x0), after :attr:`perm` holds the solved permutation."""
        return self.x1.index_select(0, self.perm), self.x0


@functools.lru_cache(maxsize=1)
def _solver_pool() -> ThreadPoolExecutor:
    """Threads for host assignments solved at once (one pool per process)."""
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="flowstudy-ot")


def solve_pairings(pairings: Sequence[HostPairing]) -> None:
    """On the host, between a step's two parts: each pairing's permutation from its cost, written to
    the device. Several are solved on threads (scipy releases the GIL while it solves)."""
    costs = [p.host_cost() for p in pairings]  # on this thread: its stream ordered the draws
    perms = (_solver_pool().map if len(pairings) > 1 else map)(HostPairing.solve, pairings, costs)
    for pairing, perm in zip(pairings, perms):
        pairing.perm.copy_(perm)


def uncapturable_reason(trainer) -> str | None:
    """Why the step of ``trainer`` (a set-up :class:`~flowstudy.train.trainer.Trainer`) cannot be
    captured, or None when it can."""
    if trainer.device.type != "cuda":
        return "graphs need a CUDA device"
    if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        return f"torch {torch.__version__} cannot capture a non-default generator (needs torch >= 2.4)"
    if split_pairing(trainer.flow, trainer.augmentations) is not None:
        return None
    return host_work(trainer.flow, trainer.augmentations)


def make_train_step(trainer, *, message=print):
    """The step function for a set-up ``trainer``: a :class:`CapturedStep` where it can be, else
    its eager ``train_step``."""
    if not trainer.config.graph or trainer.device.type != "cuda":
        return trainer.train_step
    reason = uncapturable_reason(trainer)
    if reason is None:
        try:
            return CapturedStep(trainer)
        except Exception as err:  # a forward that syncs, an op without capture support, ...
            reason = f"capture failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    message(f"training step runs eagerly, not as a CUDA graph: {reason}")
    return trainer.train_step


class CapturedStep:
    """``trainer``'s training step as a CUDA graph (module docstring); call it like ``train_step``.

    ``capture=False`` runs the same device-side step eagerly (no graph): on any device, which
    lets tests compare this path's arithmetic with the trainer's reference step on the CPU.
    """

    def __init__(self, trainer, *, capture: bool = True):
        self.trainer = trainer
        self.device = trainer.device
        batcher, cfg = trainer.batcher, trainer.config
        self.params = [p for p in trainer.model.parameters() if p.requires_grad]
        self.ema_params = list(trainer.ema.model.parameters())
        self.buffers = list(trainer.model.buffers())
        self.ema_buffers = list(trainer.ema.model.buffers())
        # Device-side state the graph reads and advances.
        self.perm = batcher.perm.clone()  # [N] this epoch's permutation
        self.pos = torch.tensor([batcher.pos], device=self.device)  # [1] next batch's start in perm
        self.offsets = torch.arange(batcher.batch_size, device=self.device)  # [B]
        self.step = torch.tensor([trainer.step], device=self.device)  # [1] optimiser steps taken
        self.ema_updates = torch.tensor([float(trainer.ema.num_updates)], device=self.device, dtype=torch.float64)
        self.lr_table = self._lr_table(trainer)  # [groups, total_steps]
        self.lrs = [torch.tensor(float(g["lr"]), device=self.device, dtype=self.lr_table.dtype) for g in trainer.optimizer.param_groups]
        # exact OT: the pairing is solved on the host between two graphs (module docstring)
        self.pairing = HostPairing.of(trainer.flow, trainer.augmentations, batcher.batch_size, self.device)
        self.graph = self.pair_graph = None
        if capture:
            self._capture()

    @staticmethod
    def _lr_table(trainer) -> Tensor:
        cfg, total = trainer.config, trainer.total_steps
        factors = torch.tensor([lr_factor(s, total, cfg.warmup_frac, cfg.min_lr_frac) for s in range(total)], dtype=torch.float64)
        base = torch.tensor(trainer.scheduler.base_lrs, dtype=torch.float64)  # [groups]
        # float32 for the fused CUDA kernel; float64 elsewhere, where it equals the eager float lr
        dtype = torch.float32 if trainer.device.type == "cuda" else torch.float64
        return (base[:, None] * factors[None, :]).to(trainer.device, dtype)  # [groups, total]

    # ----------------------------------------------------------------- the step's maths
    def _body(self) -> tuple[Tensor, Tensor]:
        """One step on device state only (what the graph records). Returns (loss, grad_norm)."""
        x1, x0 = self._batch()
        return self._train(self.trainer.flow, x1, x0)

    def _batch(self) -> tuple[Tensor, Tensor | None]:
        """The step's rows (augmented) and paired x0 rows (or None): [B, D] each."""
        tr = self.trainer
        idx = self.perm.index_select(0, self.pos + self.offsets)  # [B]
        self.pos.add_(self.offsets.numel())
        return tr.space.batch(idx, tr.augmentations, tr.generator)

    def _draw_pairs(self) -> None:
        """The pairing step's first part (device only): rows, x0 and their [B, B] cost."""
        self.pairing.draw(self._batch()[0], self.trainer.generator)

    def _assign(self) -> None:
        """On the host, between the two parts: solve the cost and write the permutation to the device."""
        solve_pairings([self.pairing])

    def _paired_body(self) -> tuple[Tensor, Tensor]:
        """The pairing step's second part (device only): paired rows, then the step."""
        return self._train(self.pairing.flow, *self.pairing.rows())

    def _eager_body(self) -> tuple[Tensor, Tensor]:
        """The whole step without a graph (warm-up, ``capture=False``)."""
        if self.pairing is None:
            return self._body()
        self._draw_pairs()
        self._assign()
        return self._paired_body()

    def _train(self, flow, x1: Tensor, x0: Tensor | None) -> tuple[Tensor, Tensor]:
        """Loss, backward, clipping, AdamW and EMA for one batch (device only)."""
        tr = self.trainer
        loss = tr.space.loss(flow, x1, x0, tr.generator, tr.config.precision)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, tr.config.grad_clip)  # foreach on CUDA: no sync
        step = self.step.clamp(max=self.lr_table.shape[1] - 1)
        for lr, row in zip(self.lrs, self.lr_table):
            lr.copy_(row.index_select(0, step).reshape(()))
        tr.optimizer.step()
        self.step.add_(1)
        self._ema_update()
        return tr.space.logged(loss), grad_norm

    @torch.no_grad()
    def _ema_update(self) -> None:
        """ema += (1 - d)(p - ema), d = min(decay, (1 + n) / (10 + n)) (as EMA.update, on the device)."""
        n = self.ema_updates
        decay = torch.clamp((1 + n) / (10 + n), max=self.trainer.ema.decay)  # [1] float64
        weight = (1 - decay).float().reshape(())
        diff = torch._foreach_sub([p.detach() for p in self.params], self.ema_params)
        torch._foreach_mul_(diff, weight)
        torch._foreach_add_(self.ema_params, diff)
        for b_ema, b in zip(self.ema_buffers, self.buffers):
            b_ema.copy_(b)
        self.ema_updates.add_(1)

    # ----------------------------------------------------------------- capture
    def _capture(self) -> None:
        tr = self.trainer
        saved = self._snapshot()

        def warm_up():  # each reads an epoch's first batch: never past its rows, even when the epoch is one batch
            self.pos.zero_()
            tr.optimizer.zero_grad(set_to_none=True)
            self._eager_body()

        def restore():
            self._restore(saved)
            tr.optimizer.zero_grad(set_to_none=True)

        self.pair_graph, self.graph, (self.loss, self.grad_norm) = capture(
            self.device, self._body if self.pairing is None else self._paired_body, warm_up=warm_up, warm_ups=WARMUP_STEPS,
            restore=restore, first=self._draw_pairs if self.pairing is not None else None,
            generators=[tr.generator], around=self._lr_tensors,
        )

    def _lr_tensors(self):
        """The optimiser reads its learning rates from the device tensors while inside this block."""
        groups = self.trainer.optimizer.param_groups

        @contextmanager
        def swap():
            floats = [g["lr"] for g in groups]
            for g, lr in zip(groups, self.lrs):
                g["lr"] = lr
            try:
                yield
            finally:
                for g, value in zip(groups, floats):
                    g["lr"] = value

        return swap()

    def _snapshot(self) -> dict:
        tr = self.trainer
        return {
            "params": [p.detach().clone() for p in self.params],
            "ema": [p.detach().clone() for p in self.ema_params],
            "opt": {id(p): {k: v.clone() for k, v in s.items()} for p, s in tr.optimizer.state.items()},
            "generator": tr.generator.get_state(),
            "counters": [t.clone() for t in (self.pos, self.step, self.ema_updates)],
        }

    @torch.no_grad()
    def _restore(self, saved: dict) -> None:
        """Undo the warm-up in place (the graph will read these very tensors)."""
        tr = self.trainer
        torch._foreach_copy_(self.params, saved["params"])
        torch._foreach_copy_(self.ema_params, saved["ema"])
        for p, state in tr.optimizer.state.items():
            before = saved["opt"].get(id(p))
            for key, value in state.items():
                if torch.is_tensor(value):
                    value.copy_(before[key]) if before is not None else value.zero_()
        tr.generator.set_state(saved["generator"])
        for t, value in zip((self.pos, self.step, self.ema_updates), saved["counters"]):
            t.copy_(value)

    # ----------------------------------------------------------------- per step
    def __call__(self) -> tuple[Tensor, Tensor]:
        """One step; returns (loss, grad_norm) as device tensors, like ``Trainer.train_step``."""
        tr = self.trainer
        batcher = tr.batcher
        new_epoch = batcher.pos + batcher.batch_size > batcher.n
        batcher.next()  # host mirror; draws the next permutation (eagerly) at an epoch's end
        if new_epoch:
            self.perm.copy_(batcher.perm)
            self.pos.zero_()
        if self.graph is None:
            with self._lr_tensors():
                tr.optimizer.zero_grad(set_to_none=True)
                loss, grad_norm = self._eager_body()
        else:
            if self.pair_graph is not None:
                self.pair_graph.replay()
                self._assign()  # waits for the cost: the host solves while the GPU is idle
            self.graph.replay()
            loss, grad_norm = self.loss.clone(), self.grad_norm
        tr.scheduler.step()  # host bookkeeping only (float learning rates), for checkpoints and logs
        tr.ema.num_updates += 1
        return loss, grad_norm


__all__ = ["CapturedStep", "HOST_AUGMENTATIONS", "HostPairing", "host_work", "make_train_step", "solve_pairings", "split_pairing", "uncapturable_reason"]
