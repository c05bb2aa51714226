"""Many runs of one network architecture trained as one stacked model: the fast path beside the Trainer.

K runs (members) that share a network and its shapes — differing in seed, learning rate, data
subset, augmentation, flow — train together. Their weights are stacked along a new leading axis
[K, ...] and one vmapped forward (``torch.func.functional_call`` under ``vmap``: batched matrix
products; :mod:`flowstudy.train.stacked_network`) and one backward compute all K losses (the Mamba scans fold the members into their
batch rows: flowstudy.models.ssm.torch_scan.MemberFold). Networks that vmap cannot batch
(mamba_ssm's fused scan, an old-style autograd Function) are evaluated member by member inside
the same step. Members must draw batches of one size. Each member stays its own run: it is an
ordinary :class:`~flowstudy.train.trainer.Trainer` whose generator, batcher, data, base field and
flow draw exactly the batches, noise and times a separate run with its seed draws; gradient
clipping, AdamW (the trainer's update, per member: its own learning-rate schedule, weight decay
and step count), EMA, validation, early stopping, checkpoints and trackers are per member.
The stacked weights live in one [K, P] tensor (and so do their gradient, EMA and AdamW moments;
:class:`FlatStack`), so that clipping, AdamW and EMA are a few kernels per group step whatever the
number of parameter tensors (:mod:`flowstudy.train.flat_update`). Before a member validates, the group writes its slice of the stacked
weights, EMA and AdamW moments back into its trainer, which then validates and writes its checkpoints itself: every
member's run directory is loadable and resumable as an ordinary run.

Two ways to draw a group step's batches, noise and times:

- **vectorised** (the default for homogeneous members: same flow path, coupling, time sampler and
  augmentation kinds; :func:`~flowstudy.train.group_batch.heterogeneity`): gathers, augmentations,
  path draws, base fields and losses for all K members as stacked [K, ...] tensors, O(1) kernels
  per step whatever K, from one group generator (:mod:`flowstudy.train.group_batch` gives the
  draws, the seeding and how a group resumes exactly). A member is a run of its configuration
  but not its separate run's draws.
- **per member** (the fallback, or ``vectorise=False``): each member draws from its own generator
  in its own order, so a member equals its separate run draw for draw; ~20-40 small kernels per
  member and per step, and the host advances every member's batcher.

On CUDA the whole group step is captured as one CUDA graph (the group generator, or every
member's generator, registered with it), as :mod:`flowstudy.train.graph` does for one run; with
exact-OT members as two graphs around their host assignments (per-member step). Elsewhere, or for
Sinkhorn pairing or mixup, it runs eagerly.

    results = StackedGroup([cfg_seed0, cfg_seed1, cfg_seed2], ["runs/s0", "runs/s1", "runs/s2"]).fit()
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from flowstudy.cudagraphs import capture, last_wait
from flowstudy.checkpoint import save_checkpoint
from flowstudy.errors import ConfigError
from flowstudy.flows.method import velocity_loss
from flowstudy.train.config import TrainConfig
from flowstudy.train.flat_update import FlatStack, flat_adamw_ema_, flat_update_available, torch_adamw_ema_
from flowstudy.train.graph import WARMUP_STEPS, HostPairing, solve_pairings, uncapturable_reason
from flowstudy.train.group_batch import GroupBatches, heterogeneity
from flowstudy.train.optim import seek_schedule, takes_weight_decay
from flowstudy.train.precision import autocast_for, matmul_precision
from flowstudy.train.schedule import lr_factor
from flowstudy.train.stacked_network import CompiledOrPlain, StackedNetwork
from flowstudy.train.stopping import StopRequest, TrainingInterrupted, stop_on_signals
from flowstudy.train.trackers import make_trackers
from flowstudy.train.trainer import LOG_EVERY, Trainer, TrainResult

FUSED_UPDATE = True
"""Clipping, AdamW and EMA as one Triton kernel where it runs (flowstudy.train.flat_update); False:
the torch update everywhere (benchmarks compare the two)."""

SHARED_FIELDS = ("arch", "model", "residual_rank", "residual_input", "batch_size", "betas", "precision", "compile", "device")
"""TrainConfig fields that must be equal within a group (the stacked network and its batch)."""


def group_key(config: TrainConfig) -> tuple:
    """Configs with equal keys can train in one group (same network, shapes, batch and precision)."""
    return tuple(repr(getattr(config, name)) for name in SHARED_FIELDS)


class GroupMember(Trainer):
    """A member's Trainer; its checkpoints also carry the group's record (``group``) when it has one."""

    group_record: dict | None = None

    def checkpoint_state(self, finished: bool) -> dict:
        state = super().checkpoint_state(finished)
        if self.group_record is not None:
            state["group"] = self.group_record
        return state


class StackedGroup:
    """Train ``configs`` into ``run_dirs`` as one stacked model; :meth:`fit` returns one TrainResult each.

    ``capture``: replay the step as a CUDA graph (default: on CUDA when every config has ``graph``);
    ``vmap``: batch the K networks with vmap (default: when the network runs under vmap), else
    evaluate them one after another within the step; ``vectorise``: draw for all members at once
    (default: when the members are homogeneous; True fails with the reason when they are not),
    else member by member; ``leading=False``: subspace members step on all D eigen-coordinates
    (Trainer's ``leading``). The members share one :class:`~flowstudy.train.stopping.StopRequest`
    (:attr:`stop`): a stop asked of any member stops the group. After :meth:`fit` starts,
    ``step_kind`` is "vectorised" or "per-member" and ``fallback_reason`` says why a group drew
    per member; once it trains, ``setup_seconds`` holds the seconds before its first step:
    "prepare" (the members' setup), "capture_wait" (for other threads' captures) and "capture"
    (warm-up and recording).
    """

    def __init__(
        self,
        configs: Sequence[TrainConfig],
        run_dirs: Sequence[str | Path],
        *,
        capture: bool | None = None,
        vmap: bool | None = None,
        vectorise: bool | None = None,
        leading: bool = True,
    ):
        if not configs or len(configs) != len(run_dirs):
            raise ConfigError(f"a group needs one run directory per config; got {len(configs)} configs, {len(run_dirs)} directories")
        keys = {group_key(c.validate()) for c in configs}
        if len(keys) > 1:
            raise ConfigError(f"configs of one group must share {', '.join(SHARED_FIELDS)}; got {len(keys)} different combinations")
        self.members = [GroupMember(c, d, progress=False, leading=leading) for c, d in zip(configs, run_dirs)]
        self.stop = StopRequest()
        for member in self.members:
            member.stop = self.stop
        self.capture, self.vmap, self.vectorise = capture, vmap, vectorise  # None: decided in prepare

    # ----------------------------------------------------------------- setup
    def prepare(self, resume: Sequence[bool]) -> None:
        """Set up every member (``resume``: per member) and the group's stacked state and step."""
        records = []
        for member, again in zip(self.members, resume):
            state = member.prepare(again)
            records.append(state.get("group") if state is not None else None)
        dims = {m.dim for m in self.members}
        if len(dims) > 1:
            raise ConfigError(f"members of a group must have one data dimension; got {sorted(dims)}")
        batches = {m.batcher.batch_size for m in self.members}
        if len(batches) > 1:  # a member with fewer rows than batch_size draws all its rows per step
            sizes = ", ".join(f"member {k}: {m.batcher.batch_size} of {m.train_x1.shape[0]} rows" for k, m in enumerate(self.members))
            raise ConfigError(f"members of a group must draw batches of one size; got {sizes}")
        if len({m.space.rotation is None for m in self.members}) > 1:  # one stacked network: one coordinate system
            for member in self.members:
                member.set_step_space(False)
        elif len({m.space.x1.shape[1] for m in self.members}) > 1:  # and one width of the step's rows
            for member in self.members:
                member.set_step_space(True, leading=False)
        first = self.members[0]
        self.loss_offsets = torch.tensor([m.space.loss_offset for m in self.members], device=first.device)  # [K]
        self.device, self.K = first.device, len(self.members)
        no_decay = {n for n, p in first.model.named_parameters() if not takes_weight_decay(p)}
        trained = [n for n, p in first.model.named_parameters() if p.requires_grad]
        decayed = [n for n in trained if n not in no_decay]
        # decayed tensors first: weight decay is then one kernel on the leading columns of the flat weights
        self.names = decayed + [n for n in trained if n in no_decay]
        stack = lambda tensors: torch.stack([t.detach() for t in tensors])  # noqa: E731  (a new tensor)
        named = [dict(m.model.named_parameters()) for m in self.members]
        ema_named = [dict(m.ema.model.named_parameters()) for m in self.members]
        self.flat = FlatStack([named[0][n] for n in self.names], self.K)
        self.decayed = sum(self.flat.sizes[: len(decayed)])  # columns
        self.weights = self.flat.pack([stack([p[n] for p in named]) for n in self.names])  # [K, P]
        self.ema_weights = self.flat.pack([stack([p[n] for p in ema_named]) for n in self.names])  # [K, P]
        self.params = [v.requires_grad_(True) for v in self.flat.views(self.weights)]  # [K, ...] leaves on the flat storage
        self.grad = torch.zeros_like(self.weights)  # [K, P]: the step's gradient, written in place
        self.ema = self.flat.views(self.ema_weights)
        self.buffers = {n: stack([dict(m.model.named_buffers())[n] for m in self.members]) for n, _ in first.model.named_buffers()}
        self.moments = [self.flat.pack(rows) for rows in self._moments(named)]  # AdamW's exp_avg, exp_avg_sq: [K, P]
        self.exp_avg, self.exp_avg_sq = (self.flat.views(m) for m in self.moments)
        # one kernel for clipping, AdamW and EMA where Triton runs (fp32 weights); the torch update's
        # [K, P] temporary otherwise, allocated once
        self.fused_update = FUSED_UPDATE and flat_update_available(self.weights)
        self.scratch = None if self.fused_update else torch.empty_like(self.weights)
        self._counters()
        shape = (first.batcher.batch_size, first.space.x1.shape[1])  # [B, D'] the step's rows
        stacked = StackedNetwork(first.space.net, self.names, self.buffers, self.params, shape, vmap=self.vmap)  # the network the step calls
        self.vmapped = stacked.vmapped
        mode = first.config.compile  # TrainConfig.compile: the K networks' forward and backward through torch.compile
        self.network = CompiledOrPlain(stacked.velocities, mode) if mode is not None else stacked.velocities
        self.batches = self._group_batches(records)
        # exact-OT members pair on the host between two graphs (flowstudy.train.graph); per-member step only
        pairings = [HostPairing.of(m.flow, m.augmentations, first.batcher.batch_size, self.device) for m in self.members] if self.batches is None else []
        self.pairings = {k: p for k, p in enumerate(pairings) if p is not None}

    def _group_batches(self, records: list[dict | None]) -> GroupBatches | None:
        """The vectorised step's draws, or None for the per-member step (with the reason, on stderr)."""
        reason = heterogeneity(self.members) if self.vectorise is not False else "the per-member step was asked for"
        if reason is not None and self.vectorise:
            raise ConfigError(f"this group cannot draw for all members at once: {reason}")
        self.fallback_reason = reason
        self.step_kind = "per-member" if reason else "vectorised"
        if reason is not None:
            if self.vectorise is None:
                print(f"group step draws member by member: {reason}", file=sys.stderr)
            return None
        batches = GroupBatches(self.members, records)
        if any(r is not None for r in records) and not batches.exact_resume:
            print("group resumed from checkpoints of different group steps: a new stream of draws starts", file=sys.stderr)
        return batches

    def _moments(self, named: list[dict]) -> tuple[list[Tensor], list[Tensor]]:
        """AdamW moments per parameter, [K, ...]: a resumed member's own, zeros for a fresh one."""
        out = {"exp_avg": [], "exp_avg_sq": []}
        for key in out:
            for i, n in enumerate(self.names):
                rows = [m.optimizer.state.get(p[n], {}).get(key) for m, p in zip(self.members, named)]
                out[key].append(torch.stack([r.to(self.device) if r is not None else torch.zeros_like(self.params[i][0]) for r in rows]))
        return out["exp_avg"], out["exp_avg_sq"]

    def _counters(self) -> None:
        """Per-member scalars as [K] device tensors: steps, schedules, clipping, decay."""
        ms, dev, f64 = self.members, self.device, torch.float64
        self.opt_steps = torch.tensor([float(m.step) for m in ms], device=dev, dtype=f64)
        self.ema_updates = torch.tensor([float(m.ema.num_updates) for m in ms], device=dev, dtype=f64)
        self.ema_decay = torch.tensor([m.ema.decay for m in ms], device=dev, dtype=f64)
        self.grad_clip = torch.tensor([m.config.grad_clip for m in ms], device=dev, dtype=f64)
        self.weight_decay = torch.tensor([m.config.weight_decay for m in ms], device=dev, dtype=f64)
        longest = max(m.total_steps for m in ms)
        table = torch.tensor(
            [[m.config.lr * lr_factor(min(s, m.total_steps - 1), m.total_steps, m.config.warmup_frac, m.config.min_lr_frac) for s in range(longest)] for m in ms],
            dtype=f64,
        )  # [K, longest]: a member past its end keeps its last rate (its slice is no longer written back)
        self.lr_host, self.lr_table = table, table.to(dev)
        batch = ms[0].batcher.batch_size
        self.offsets = torch.arange(batch, device=dev)  # [B]
        self.perms = [m.batcher.perm.clone() for m in ms]  # [N_k] each
        self.positions = [torch.tensor([m.batcher.pos], device=dev) for m in ms]  # [1] each

    # ----------------------------------------------------------------- the step's maths
    def _body(self) -> tuple[Tensor, Tensor]:
        """One group step on device state only (what the graph records). Returns losses, grad norms: [K]."""
        losses = self._member_losses() if self.batches is None else self._group_losses()  # [K]
        scale = self.members[0].space.loss_scale  # k / D: one width per group (flowstudy.train.eigen_step)
        if scale != 1.0:
            losses = losses * scale
        # members' parameters are disjoint: each gets its own loss's gradient; gathered into the flat
        # gradient by one concatenation into a kept buffer (no fresh [K, P] tensor per step)
        grads = torch.autograd.grad(losses.sum(), self.params, allow_unused=True)
        parts = [(g if g is not None else torch.zeros_like(p)).reshape(self.K, -1) for g, p in zip(grads, self.params)]
        torch.cat(parts, dim=1, out=self.grad)
        with torch.no_grad():
            norms = self._update()
        return losses.detach() + self.loss_offsets, norms

    def _group_losses(self) -> Tensor:
        """The vectorised step's losses: O(1) kernels whatever K (flowstudy.train.group_batch). [K]"""
        s = self.batches.sample()  # [K, B, ...]
        with autocast_for(self.device, self.members[0].config.precision):
            v = self.network(s.x_t, s.t, self.params)  # [K, B, D]
            v = self.batches.with_base(v, s.x_t, s.t)
        return self.batches.losses(v, s.u_t)

    def _member_batch(self, k: int) -> tuple[Tensor, Tensor | None]:
        """Member k's rows (augmented) and paired x0 rows (or None), from its own generator: [B, D]."""
        m, pos = self.members[k], self.positions[k]
        idx = self.perms[k].index_select(0, pos + self.offsets)  # [B]
        pos.add_(self.offsets.numel())
        return m.space.batch(idx, m.augmentations, m.generator)

    def _draw_pairs(self) -> None:
        """The first part of a step with exact-OT members (device only; flowstudy.train.graph): their
        rows, x0 and [B, B] costs. The other members draw in the second part."""
        for k, pairing in self.pairings.items():
            pairing.draw(self._member_batch(k)[0], self.members[k].generator)

    def _assign(self) -> None:
        """On the host, between the two parts: each exact-OT member's permutation, to the device."""
        solve_pairings(list(self.pairings.values()))

    def _eager_body(self) -> tuple[Tensor, Tensor]:
        """The whole group step without a graph."""
        if self.pairings:
            self._draw_pairs()
            self._assign()
        return self._body()

    def _member_losses(self) -> Tensor:
        """The per-member step's losses: each member's own draws from its own generator. [K]"""
        samples = []
        for k, m in enumerate(self.members):
            if k in self.pairings:  # drawn and paired before (_draw_pairs, _assign)
                samples.append(self.pairings[k].flow.sample_path(*self.pairings[k].rows(), m.generator))
                continue
            x1, x0 = self._member_batch(k)
            samples.append(m.flow.sample_path(x1, x0, m.generator))  # the member's own draws, in its order
        x_t = torch.stack([s.x_t for s in samples])  # [K, B, D]
        t = torch.stack([s.t for s in samples])  # [K, B]
        with autocast_for(self.device, self.members[0].config.precision):
            v = self.network(x_t, t, self.params)  # [K, B, D]
            fields = [v[k] if m.space.base is None else v[k] + m.space.base(s.x_t, s.t) for k, (m, s) in enumerate(zip(self.members, samples))]
        return torch.stack([velocity_loss(f, s.u_t, m.flow.loss_weight) for f, s, m in zip(fields, samples, self.members)])  # [K]

    def _update(self) -> Tensor:
        """Clipping (torch's clip_grad_norm_), torch.optim.AdamW's update (amsgrad off) and the EMA
        for all members at once, with [K] rates, step counts, weight decays and EMA weights, on the
        flat [K, P] state. One Triton kernel where it runs (flowstudy.train.flat_update), else a
        few torch kernels. Returns the gradient norms before clipping: [K]."""
        beta1, beta2 = self.members[0].config.betas
        eps = self.members[0].optimizer.defaults["eps"]
        norms = torch.linalg.vector_norm(self.grad, dim=1)  # [K]
        coef = torch.clamp(self.grad_clip.to(norms.dtype) / (norms + 1e-6), max=1.0)  # [K]
        lr = self.lr_table.gather(1, self.opt_steps.long().clamp(max=self.lr_table.shape[1] - 1)[:, None])[:, 0]  # [K]
        self.opt_steps.add_(1)
        step_size, bias2_sqrt = lr / (1 - beta1**self.opt_steps), torch.sqrt(1 - beta2**self.opt_steps)
        decay = 1 - lr * self.weight_decay  # the decayed tensors come first: columns [0, decayed)
        ema_weight = 1 - torch.minimum((1 + self.ema_updates) / (10 + self.ema_updates), self.ema_decay)
        self.ema_updates.add_(1)
        # ema += (1 - d)(p - ema), d = min(decay, (1 + n) / (10 + n))
        scalars = torch.stack([coef.to(lr.dtype), decay, step_size, bias2_sqrt, ema_weight], dim=1)  # [K, 5]
        if self.fused_update:
            flat_adamw_ema_(self.weights, self.grad, *self.moments, self.ema_weights, scalars, self.decayed, beta1, beta2, eps)
        else:
            torch_adamw_ema_(self.weights, self.grad, *self.moments, self.ema_weights, scalars, self.decayed, beta1, beta2, eps, self.scratch)
        return norms

    # ----------------------------------------------------------------- capture
    def _capture(self):
        saved = self._snapshot()

        def warm_up():  # each reads an epoch's first batch: never past its rows
            for pos in self._positions():
                pos.zero_()
            self._eager_body()

        self.pair_graph, graph, self.out = capture(
            self.device, self._body, warm_up=warm_up, warm_ups=WARMUP_STEPS, restore=lambda: self._restore(saved),
            first=self._draw_pairs if self.pairings else None, generators=self._generators(),
        )
        return graph

    def _generators(self) -> list[torch.Generator]:
        return [self.batches.generator] if self.batches is not None else [m.generator for m in self.members]

    def _positions(self) -> list[Tensor]:
        return [self.batches.pos] if self.batches is not None else self.positions

    def _state_tensors(self) -> list[Tensor]:
        data = self.batches.state_tensors() if self.batches is not None else self.positions
        return [self.weights, self.ema_weights, *self.moments, self.opt_steps, self.ema_updates, *data]

    def _snapshot(self) -> dict:
        return {"tensors": [t.detach().clone() for t in self._state_tensors()], "rng": [g.get_state() for g in self._generators()]}

    @torch.no_grad()
    def _restore(self, saved: dict) -> None:
        for t, value in zip(self._state_tensors(), saved["tensors"]):
            t.copy_(value)
        for generator, state in zip(self._generators(), saved["rng"]):
            generator.set_state(state)

    # ----------------------------------------------------------------- loop
    def fit(self, resume: bool | Sequence[bool] = False) -> list[TrainResult]:
        """Train every member to its end (or early stop). ``resume``: per member, or for all."""
        resume = [resume] * len(self.members) if isinstance(resume, bool) else list(resume)
        tic = time.perf_counter()
        self.prepare(resume)
        prepared = time.perf_counter()
        tf32 = matmul_precision(self.device, self.members[0].config.precision)  # the capture picks the kernels
        with tf32:
            self.graph = graph = self.make_graph()
        waited = last_wait() if graph is not None else 0.0
        # before the first step: members' setup, waiting for other threads' captures, warm-up + recording
        self.setup_seconds = {"prepare": prepared - tic, "capture_wait": waited, "capture": time.perf_counter() - prepared - waited}
        trackers = [make_trackers(m.config.tracker, m.paths.root, m.config.to_dict(), m.step if again else None) for m, again in zip(self.members, resume)]
        started = time.perf_counter()
        try:
            with stop_on_signals(self.stop), tf32:
                outcome = self._loop(graph, trackers)
        finally:
            for group in trackers:
                for tracker in group:
                    tracker.close()
        seconds = time.perf_counter() - started
        return [TrainResult(m.paths.root, m.step, m.total_steps, m.best_val, m.last_val, outcome[k], seconds) for k, m in enumerate(self.members)]

    def make_graph(self):
        """The group step as a CUDA graph where it can and should be (``capture``), else None (eager)."""
        self.pair_graph = None
        reasons = {uncapturable_reason(m) for m in self.members} - {None}
        wanted = self.capture if self.capture is not None else (self.device.type == "cuda" and all(m.config.graph for m in self.members))
        if not wanted:
            return None
        if reasons:
            print(f"group step runs eagerly, not as a CUDA graph: {sorted(reasons)[0]}", file=sys.stderr)
            return None
        return self._capture()

    def step(self, graph) -> tuple[Tensor, Tensor]:
        """One group step (a replay of ``graph``, or eager when it is None): the members' logged
        losses and gradient norms before clipping, [K] each, on the device."""
        self._advance_epochs()
        if graph is None:
            return self._eager_body()
        if self.pair_graph is not None:
            self.pair_graph.replay()
            self._assign()  # waits for the costs: the host solves while the GPU is idle
        graph.replay()
        return self.out[0].clone(), self.out[1]

    def _advance_epochs(self) -> None:
        """Host work before a step: new epochs where due (vectorised: O(1) in K; per member: a loop)."""
        if self.batches is not None:
            self.batches.advance()
            return
        for m, perm, pos in zip(self.members, self.perms, self.positions):
            new_epoch = m.batcher.pos + m.batcher.batch_size > m.batcher.n
            m.batcher.next()  # host mirror; the next permutation is drawn eagerly, as a separate run does
            if new_epoch:
                perm.copy_(m.batcher.perm)
                pos.zero_()

    def _loop(self, graph, trackers) -> list[bool]:
        active = [m.step < m.total_steps for m in self.members]
        stopped = [False] * self.K
        pending: list[Tensor] = []  # [K] losses per step since the last record
        self.marks: list[tuple[int, float]] = []
        tic, tic_step = time.perf_counter(), 0
        step = 0
        while any(active):
            losses, norms = self.step(graph)
            pending.append(losses)
            step += 1
            for m, on in zip(self.members, active):
                m.step += on
            if self.stop.requested:
                self._interrupt(active, pending)
            due = [on and (m.step % m.config.val_every == 0 or m.step == m.total_steps) for m, on in zip(self.members, active)]
            if step % LOG_EVERY == 0 or any(due):
                rows = torch.stack(pending).float().cpu()  # [steps, K]
                norms_host = norms.float().cpu()
                rate = (step - tic_step) / max(time.perf_counter() - tic, 1e-9)
                tic, tic_step = time.perf_counter(), step
                self.marks.append((step, tic))  # (group step, time) at each record, after a sync
                for k, m in enumerate(self.members):
                    if active[k]:
                        self._log(k, rows[:, k], float(norms_host[k]), rate, trackers[k])
                pending.clear()
            for k, m in enumerate(self.members):
                if due[k]:
                    self._write_back(k, [])
                    stop = m.validate_and_save(trackers[k])
                    if stop or m.step >= m.total_steps:
                        active[k], stopped[k] = False, stop
        return stopped

    def _log(self, k: int, losses: Tensor, grad_norm: float, rate: float, trackers) -> None:
        m = self.members[k]
        m.check_finite(losses)
        lr = float(self.lr_host[k, min(m.step, self.lr_host.shape[1] - 1)])
        record = {"loss": float(losses.mean()), "lr": lr, "grad_norm": grad_norm, "steps_per_s": rate}
        for tracker in trackers:
            tracker.log(m.step, record)

    def _interrupt(self, active: list[bool], pending: list[Tensor]) -> None:
        for k, m in enumerate(self.members):
            if active[k]:
                self._write_back(k, pending)
                save_checkpoint(m.paths.last, m.checkpoint_state(finished=False))
        first = self.members[0]
        raise TrainingInterrupted(
            f"interrupted at group step {first.step}; resumable checkpoints are in each member's checkpoints/last.pt (continue with resume)"
        )

    @torch.no_grad()
    def _write_back(self, k: int, pending: list[Tensor]) -> None:
        """Member k's slice of weights, EMA and AdamW state into its trainer (for its checkpoints)."""
        m = self.members[k]
        params = dict(m.model.named_parameters())
        ema = dict(m.ema.model.named_parameters())
        on_device = m.optimizer.defaults.get("fused") or m.optimizer.defaults.get("capturable")
        step = m.step
        for i, n in enumerate(self.names):
            params[n].copy_(self.params[i][k])
            ema[n].copy_(self.ema[i][k])
            m.optimizer.state[params[n]] = {
                "step": torch.tensor(float(step), dtype=torch.float32, device=params[n].device if on_device else "cpu"),
                "exp_avg": self.exp_avg[i][k].clone(),
                "exp_avg_sq": self.exp_avg_sq[i][k].clone(),
            }
        m.ema.num_updates = int(self.ema_updates[k])
        cfg = m.config
        seek_schedule(m.optimizer, m.scheduler, step, lr_factor(min(step, m.total_steps - 1), m.total_steps, cfg.warmup_frac, cfg.min_lr_frac))
        m.pending_losses = [row[k] for row in pending]
        if self.batches is not None:  # the member's epoch, and the group's stream for an exact resume
            m.batcher.perm, m.batcher.pos = self.batches.member_epoch(k)
            m.group_record = {**self.batches.record(), "index": k}


def train_group(configs: Sequence[TrainConfig], run_dirs: Sequence[str | Path], resume: bool | Sequence[bool] = False) -> list[TrainResult]:
    """Train ``configs`` into ``run_dirs`` as one :class:`StackedGroup` (one member: the plain Trainer)."""
    if len(configs) == 1:
        again = resume if isinstance(resume, bool) else resume[0]
        return [Trainer(configs[0], run_dirs[0], progress=False).fit(resume=again)]
    return StackedGroup(configs, run_dirs).fit(resume)


__all__ = ["SHARED_FIELDS", "GroupMember", "StackedGroup", "group_key", "train_group"]
