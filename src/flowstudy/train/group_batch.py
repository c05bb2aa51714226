"""The vectorised group step's data side: K members' batches, draws, base fields and losses in O(1) kernels.

A :class:`~flowstudy.train.stacked.StackedGroup` of homogeneous members — the same flow path,
coupling (independent or paired), time sampler and loss weight, the same augmentation kinds in
the same order — draws for all K members at once instead of member by member:

    data            stacked [K, N_max, D] (member k's N_k rows, zero-padded); a batch is one gather
    epochs          one [K, N_max] draw of uniform keys, argsorted per row (padding keys sort last):
                    member k's epoch is a permutation of its own N_k rows, batches of B rows, the
                    tail shorter than a batch skipped (as :class:`~flowstudy.train.batcher.Batcher`)
    augmentation    per kind one [K, B, D] draw; strengths are [K] (noise std, dropout p)
    path            one [K·B, D] noise draw, one [K·B] time draw (and z when the path has noise),
                    through the flow's own ``sample_path``
    base field      each member's Gaussian base field, vmapped over stacked buffers ([K, D, D] bmm;
                    member by member if the buffers do not stack); none for members without one
    loss            w · mean over (B, D) of |v − u_t|², one value per member: [K]

What may differ between members: data (subset, file), seed, learning rate and schedule, weight
decay, clipping, EMA decay, augmentation strengths, base field (fitted or none), patience.
:func:`heterogeneity` says why a group cannot take this path; it then keeps the per-member step.

Randomness. All draws come from one **group generator** seeded from the members' seeds in order
(:func:`group_seed`, numpy's SeedSequence over ``[K, seed_1..seed_K, step_1..step_K]``). Member k's
draws are row k of each stacked draw, so members get independent draws even with equal seeds,
and a group is deterministic given its members' seeds and order. A member of a vectorised group
does not retrace the separate run with its seed draw for draw (the per-member step does); it is
a run of the same distribution. The epochs' host work is a numpy check over [K] per step (no
loop over members, no sync: the host mirrors the device positions). Order per group step: the epoch keys (only at a step where some
member starts an epoch, drawn eagerly before the step, for all K rows; rows of members not
starting an epoch are discarded), then in the step the augmentations in order ([K, B, D] each),
x0 ([K·B, D]), t ([K·B]), z ([K·B, D]) if the path has noise.

Resume. Every member's checkpoint carries the group's record (:meth:`GroupBatches.record`: the
seeds in order, the group steps taken, the generator's state) and, in its batcher state, its own
permutation and position. A group resumed from checkpoints whose records agree (same seeds in the
same order, written at the same group step with one generator state) continues the stream
exactly: bit-identical to the uninterrupted group on one device. Otherwise (different members,
members saved at different steps) it starts a new stream seeded from the seeds and the members'
steps, and new epochs for all members: deterministic, but not the uninterrupted group's draws.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import Tensor

from flowstudy.data.augment import ELEMENTWISE
from flowstudy.flows.couplings import Independent, Paired
from flowstudy.flows.method import velocity_loss
from flowstudy.train.graph import host_work

if TYPE_CHECKING:
    from flowstudy.train.trainer import Trainer

STACKABLE_AUGMENTATIONS = tuple(ELEMENTWISE)
"""Augmentations with a stacked form (flowstudy.data.augment.ELEMENTWISE; mixup draws on the host)."""


def heterogeneity(members: Sequence[Trainer]) -> str | None:
    """Why ``members`` (set up) cannot share one vectorised group step, or None when they can."""
    first = members[0]
    reason = host_work(first.flow, first.augmentations)
    if reason is not None:
        return reason
    if not isinstance(first.flow.coupling, (Independent, Paired)):
        return f"coupling {type(first.flow.coupling).__name__} pairs rows member by member"
    kinds = [name for name, _ in first.augmentations]
    if any(k not in STACKABLE_AUGMENTATIONS for k in kinds):
        return f"augmentation {[k for k in kinds if k not in STACKABLE_AUGMENTATIONS][0]} has no stacked form"
    for k, m in enumerate(members):
        if m.flow.path != first.flow.path or type(m.flow.coupling) is not type(first.flow.coupling):
            return f"members 0 and {k} use different flow paths or couplings ({first.flow.name}, {m.flow.name})"
        if m.flow.time_sampler != first.flow.time_sampler:
            return f"members 0 and {k} draw t from different time samplers"
        if [name for name, _ in m.augmentations] != kinds:
            return f"members 0 and {k} use different augmentation kinds"
        if m.train_x1.shape[0] < m.config.batch_size:
            return f"member {k} has {m.train_x1.shape[0]} rows, fewer than a batch of {m.config.batch_size}"
    return None


def group_seed(seeds: Sequence[int], steps: Sequence[int]) -> int:
    """The group generator's seed (63 bits) from the members' seeds and steps, in member order."""
    entropy = [len(seeds), *(int(s) % 2**64 for s in seeds), *(int(s) for s in steps)]
    words = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) | (int(words[1]) >> 1)


@dataclass
class GroupSample:
    """A group step's path draws, stacked: t [K, B]; x_t, u_t [K, B, D]."""

    t: Tensor
    x_t: Tensor
    u_t: Tensor


class GroupBatches:
    """Device-side batches and draws of K homogeneous members (module docstring).

    ``resume_records``: per member the ``group`` record of its checkpoint (None for a fresh member).
    """

    def __init__(self, members: Sequence[Trainer], resume_records: Sequence[dict | None]):
        first = members[0]
        self.device, self.K, self.batch = first.device, len(members), first.config.batch_size
        self.flow, self.kinds = first.flow, [name for name, _ in first.augmentations]
        self.seeds = [int(m.config.seed) for m in members]
        sizes = [m.space.x1.shape[0] for m in members]
        self.n_host = np.array(sizes, dtype=np.int64)  # [K] host mirror: no sync to find epoch ends
        self.n = torch.tensor(sizes, device=self.device)  # [K]
        self.n_max = max(sizes)
        self.x1 = _stack_rows([m.space.x1 for m in members], self.n_max)  # [K, N_max, D] (the step's rows: Trainer.space)
        self.x0 = _stack_rows([m.space.x0 for m in members], self.n_max) if first.space.x0 is not None else None
        self.padding = torch.arange(self.n_max, device=self.device)[None, :] >= self.n[:, None]  # [K, N_max]
        self.strengths = torch.tensor([[s for _, s in m.augmentations] for m in members], device=self.device).T.reshape(len(self.kinds), self.K, 1, 1)
        self.offsets = torch.arange(self.batch, device=self.device)  # [B]
        self.row_base = (torch.arange(self.K, device=self.device) * self.n_max)[:, None]  # [K, 1] flat row of member k's first row
        self._bases(members)
        self.perm = torch.empty(self.K, self.n_max, dtype=torch.long, device=self.device)  # [K, N_max] epochs
        self.pos = torch.zeros(self.K, dtype=torch.long, device=self.device)  # [K] next batch's start in perm
        self.pos_host = np.zeros(self.K, dtype=np.int64)  # [K] host mirror of pos
        self.generator = torch.Generator(device=self.device)
        self.exact_resume = self._continue(members, resume_records)
        if not self.exact_resume:
            self.generator.manual_seed(group_seed(self.seeds, [m.step for m in members]))
            self.steps = 0
            self._new_epochs(np.ones(self.K, dtype=bool))

    # ----------------------------------------------------------------- setup
    def _bases(self, members: Sequence[Trainer]) -> None:
        """Stacked base-field buffers [K, ...] (members without a base borrow one and are masked out);
        base fields whose buffers do not stack or that do not run under vmap are applied one by one."""
        self.bases = [m.space.base for m in members]
        present = [b for b in self.bases if b is not None]
        self.base_template = None
        if not present:
            return
        mask = torch.tensor([b is not None for b in self.bases], device=self.device, dtype=torch.float32)
        self.base_mask = None if bool(mask.all()) else mask[:, None, None]  # [K, 1, 1]
        try:
            self.base_template = copy.deepcopy(present[0]).to("meta")
            unread = getattr(present[0], "unread_buffers", ())  # e.g. a diagonal base's R: K x D x D floats not stacked
            names = [n for n, _ in present[0].named_buffers() if n not in unread]
            self.base_buffers = {n: torch.stack([dict((b or present[0]).named_buffers())[n] for b in self.bases]) for n in names}
            x = torch.zeros(self.K, 2, self.x1.shape[2], device=self.device)
            self._stacked_base(x, torch.full((self.K, 2), 0.5, device=self.device))
        except Exception:  # e.g. buffers whose shapes differ between members
            self.base_template = "per-member"

    def _stacked_base(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Every member's base field at (x_t: [K, B, D], t: [K, B]) -> [K, B, D]."""
        if self.base_template == "per-member":
            return torch.stack([(b or next(c for c in self.bases if c is not None))(x_t[k], t[k]) for k, b in enumerate(self.bases)])
        from torch.func import functional_call, vmap

        return vmap(lambda b, x, tt: functional_call(self.base_template, b, (x, tt)))(self.base_buffers, x_t, t)

    def _continue(self, members: Sequence[Trainer], records: Sequence[dict | None]) -> bool:
        """Restore the stream when every member's record is one and the same point of it."""
        if any(r is None for r in records):
            return False
        first = records[0]
        same = all(
            r["seeds"] == self.seeds and r.get("index") == k and r["steps"] == first["steps"]
            and torch.equal(r["generator"].cpu(), first["generator"].cpu())
            for k, r in enumerate(records)
        )
        if not same:
            return False
        self.generator.set_state(first["generator"].cpu())
        self.steps = int(first["steps"])
        with torch.no_grad():
            for k, m in enumerate(members):
                n_k = int(self.n_host[k])
                self.perm[k, :n_k] = m.batcher.perm.to(self.device)
                self.perm[k, n_k:] = torch.arange(n_k, self.n_max, device=self.device)  # padding: never read
                self.pos[k] = m.batcher.pos
        self.pos_host = np.array([m.batcher.pos for m in members], dtype=np.int64)
        return True

    # ----------------------------------------------------------------- epochs (host side, between steps)
    @torch.no_grad()
    def _new_epochs(self, starting: np.ndarray) -> None:
        """New permutations for the members in ``starting`` ([K] bool), from one [K, N_max] key draw."""
        keys = torch.rand(self.K, self.n_max, generator=self.generator, device=self.device)  # [K, N_max]
        keys.masked_fill_(self.padding, 2.0)  # padding rows sort after a member's own rows
        fresh = torch.sort(keys, dim=1, stable=True).indices  # [K, N_max]
        if starting.all():
            self.perm.copy_(fresh)
            self.pos.zero_()
        else:
            mask = self.pos + self.batch > self.n  # [K] = starting, computed where it is used: no copy, no sync
            self.perm.copy_(torch.where(mask[:, None], fresh, self.perm))
            self.pos.masked_fill_(mask, 0)
        self.pos_host = np.where(starting, 0, self.pos_host)

    def advance(self) -> None:
        """Before a step: start new epochs where a member's next batch would run past its rows.

        O(1) host work per step (numpy over [K]); the draw happens only at some member's epoch end.
        """
        starting = self.pos_host + self.batch > self.n_host  # [K]
        if starting.any():
            self._new_epochs(starting)
        self.pos_host = self.pos_host + self.batch
        self.steps += 1

    # ----------------------------------------------------------------- the step's draws (device only)
    def sample(self) -> GroupSample:
        """This step's batches and path draws for all members; advances the device positions."""
        idx = self.perm.gather(1, self.pos[:, None] + self.offsets[None, :])  # [K, B] rows of each member
        self.pos.add_(self.batch)
        flat = (idx + self.row_base).reshape(-1)  # [K·B] rows of the flattened [K·N_max, D] data
        x1 = self.x1.flatten(0, 1).index_select(0, flat).view(self.K, self.batch, -1)  # [K, B, D]
        x1 = self._augment(x1)
        x0 = self.x0.flatten(0, 1).index_select(0, flat) if self.x0 is not None else None  # [K·B, D]
        s = self.flow.sample_path(x1.flatten(0, 1), x0, self.generator)  # per-row maths on [K·B, D]
        shape = (self.K, self.batch, -1)
        return GroupSample(t=s.t.view(self.K, self.batch), x_t=s.x_t.view(shape), u_t=s.u_t.view(shape))

    def _augment(self, x: Tensor) -> Tensor:
        """The members' augmentations on x: [K, B, D], strengths [K, 1, 1] per kind (flowstudy.data.augment)."""
        for kind, strength in zip(self.kinds, self.strengths):
            x = ELEMENTWISE[kind](x, strength.to(x.dtype), self.generator)  # one [K, B, D] draw per kind
        return x

    def with_base(self, v: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """v + each member's base field at (x_t, t): [K, B, D] (v unchanged without base fields)."""
        if self.base_template is None:
            return v
        base = self._stacked_base(x_t, t)  # [K, B, D]
        return v + (base if self.base_mask is None else base * self.base_mask)

    def losses(self, v: Tensor, u_t: Tensor) -> Tensor:
        """w · mean over (B, D) of (v − u_t)², in at least float32, per member: [K]."""
        return velocity_loss(v, u_t, self.flow.loss_weight)

    # ----------------------------------------------------------------- checkpoints
    def state_tensors(self) -> list[Tensor]:
        """Device state a step advances (the capture's warm-up restores it)."""
        return [self.perm, self.pos]

    def record(self) -> dict:
        """What each member's checkpoint carries so that the group resumes exactly."""
        return {"seeds": list(self.seeds), "steps": self.steps, "generator": self.generator.get_state()}

    def member_epoch(self, k: int) -> tuple[Tensor, int]:
        """Member k's permutation of its own rows ([N_k]) and position, for its batcher's state."""
        return self.perm[k, : int(self.n_host[k])].clone(), int(self.pos_host[k])


def _stack_rows(rows: Sequence[Tensor], n_max: int) -> Tensor:
    """[N_k, D] tensors -> [K, N_max, D], zero-padded."""
    out = rows[0].new_zeros(len(rows), n_max, rows[0].shape[1])
    for k, r in enumerate(rows):
        out[k, : r.shape[0]] = r
    return out


__all__ = ["GroupBatches", "GroupSample", "STACKABLE_AUGMENTATIONS", "group_seed", "heterogeneity"]
