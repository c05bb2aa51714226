"""Bytes moved per stacked group step, by op: a CPU proxy for where a memory-bound GPU step goes.

A captured Mamba group step on an H100 keeps the GPU ~97 % busy with elementwise passes and the
Triton scan (benchmarks/RESULTS.md, "Where a captured step spends its time"); such kernels take
time in proportion to the bytes they read and write. This runs one eager group step
(``StackedGroup._body``: forward, loss, backward, clipping, AdamW, EMA) on the CPU under a
``TorchDispatchMode`` and adds up, per aten op, the bytes of its tensor arguments and results
(views move none). Matrix products are listed apart: they are bound by arithmetic, not bytes.

The selective scan is replaced by a stand-in with the Triton kernels' inputs and outputs, whose
bytes are those the kernels must move (their floor; benchmarks/SCAN.md measures the kernels at
2.4x (forward) and 6.9x (forward+backward) of it). Everything around the scan (convolution,
SiLU, projections, layout copies, loss, optimiser) runs as on the GPU with the triton backend
before its fused convolution; ``--conv triton`` replaces the convolution + SiLU with a stand-in
counted at the fused kernels' floor (flowstudy.models.ssm.triton_conv); ``--update fused`` does the
same for the group's clipping + AdamW + EMA kernel (flowstudy.train.flat_update).

    python benchmarks/bytes_per_step.py --arch mamba --members 3 --top 25 --by-part
    python benchmarks/bytes_per_step.py --arch mamba --members 3 --top 25 --conv triton
    python benchmarks/bytes_per_step.py --arch dit --members 3 --dim 1024
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from bench_stacked_ops import make_data
from flowstudy.train import resolve_config
from flowstudy.train.stacked import StackedGroup

MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation"}
NO_KERNEL = {"_unsafe_view", "_reshape_alias", "lift_fresh"}  # views of fresh tensors: no pass over memory
_SCAN = threading.local()


class ByteCounter(TorchDispatchMode):
    """Per op name: calls and bytes read + written (tensor arguments and results, views excluded)."""

    def __init__(self):
        super().__init__()
        self.calls: dict[str, int] = defaultdict(int)
        self.bytes: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket).split(".")[-1]
        if not func.is_view and name not in NO_KERNEL and not getattr(_SCAN, "inside", False):
            name = getattr(_SCAN, "label", None) or name
            moved = sum(t.nbytes for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor))
            self.calls[name] += 1
            self.bytes[name] += moved
        return out


class _ScanStandIn(torch.autograd.Function):
    """The Triton scan's signature in [B, L, d] layout; its own ops are not counted, the kernels'
    floor bytes are (recorded in ``_SCAN.floor``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(u, delta, A, B, C, D, z, bias):  # noqa: D102
        _SCAN.inside = True
        try:
            out = u * torch.sigmoid(z) + delta * 0 + (B.sum(-1, keepdim=True) + C.sum(-1, keepdim=True)) * 0
        finally:
            _SCAN.inside = False
        # read u, delta, z, B, C; write out (A, D, bias are small)
        _SCAN.floor["scan forward (kernel floor)"] += sum(t.nbytes for t in (u, delta, z, B, C, out))
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        u, delta, A, B, C, D, z, bias = ctx.saved_tensors
        _SCAN.inside = True
        try:
            grads = tuple(torch.zeros_like(t) for t in (u, delta, A, B, C, D, z, bias))
        finally:
            _SCAN.inside = False
        # read u, delta, z, dout, B, C; write du, ddelta, dz, dB, dC
        _SCAN.floor["scan backward (kernel floor)"] += sum(t.nbytes for t in (u, delta, z, g, B, C)) + sum(t.nbytes for t in (u, delta, z, B, C))
        return grads


class _ConvStandIn(torch.autograd.Function):
    """The fused Triton convolution + SiLU (``--conv triton``): its own ops are not counted, the
    kernels' floor bytes are (forward: read x, write out; backward: read x and the gradient,
    write dx; the weights and the per-program partials are small)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, w, bias):  # noqa: D102
        _SCAN.inside = True
        try:
            out = x * w[..., -1] + (0 if bias is None else bias)
        finally:
            _SCAN.inside = False
        _SCAN.floor["conv + SiLU forward (kernel floor)"] += x.nbytes + out.nbytes
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        ctx.save_for_backward(*inputs[:2])
        ctx.has_bias = inputs[2] is not None

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        x, w = ctx.saved_tensors
        _SCAN.inside = True
        try:
            grads = (torch.zeros_like(x), torch.zeros_like(w), torch.zeros_like(w[..., 0]) if ctx.has_bias else None)
        finally:
            _SCAN.inside = False
        _SCAN.floor["conv + SiLU backward (kernel floor)"] += 3 * x.nbytes
        return grads


def stand_in_conv(x, weight, bias):
    """causal_conv_silu's signature (x [B, L, d], weight [d, 1, k], bias [d])."""
    return _ConvStandIn.apply(x, weight[:, 0, :], bias)


def stand_in_update(weights, grad, exp_avg, exp_avg_sq, ema, scalars, decayed, beta1, beta2, eps):
    """The fused clipping + AdamW + EMA kernel (``--update fused``): not run, counted at its floor
    (read the gradient, weights, moments and EMA; write the last four)."""
    _SCAN.floor["AdamW + EMA update (kernel floor)"] += 9 * weights.nbytes


def stand_in_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """selective_scan_blc's signature (u, delta, z: [B, L, d]; B, C: [B, L, N])."""
    return _ScanStandIn.apply(u, delta, A, B, C, D, z, delta_bias)


def _label(cls, method: str, label: str) -> None:
    """Count the ops of cls.method under one row, ``label``."""
    fn = getattr(cls, method)

    def labelled(*args):
        _SCAN.label = label
        try:
            return fn(*args)
        finally:
            _SCAN.label = None

    setattr(cls, method, staticmethod(labelled))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mamba")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--by-part", action="store_true", help="the causal convolution's ops as one row each way")
    parser.add_argument("--conv", choices=["torch", "triton"], default="torch",
                        help="the convolution + SiLU as the torch path runs it, or the fused Triton kernels' floor bytes")
    parser.add_argument("--update", choices=["torch", "fused"], default="torch",
                        help="clipping, AdamW and EMA as torch ops, or the fused Triton kernel's floor bytes (flowstudy.train.flat_update)")
    args = parser.parse_args()
    import flowstudy.models.ssm.branch as branch

    branch.selective_scan_blc = stand_in_scan  # the torch backend's call site, now the stand-in
    if args.conv == "triton":
        branch.causal_conv_silu = stand_in_conv
    if args.update == "fused":
        import flowstudy.train.stacked as stacked

        stacked.flat_update_available = lambda weights: True
        stacked.flat_adamw_ema_ = stand_in_update
    if args.by_part:
        _label(branch._CausalConv, "forward", "causal conv (forward)")
        _label(branch._CausalConv, "backward", "causal conv (backward)")
    _SCAN.floor = defaultdict(int)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp), 800, args.dim)
        configs = [  # the architecture's recipe (flowstudy.train.config.RECIPES), as the study trains it
            resolve_config(None, {"data": data, "arch": args.arch, "seed": s, "device": "cpu", "val_every": 10**9, "batch_size": args.batch})
            for s in range(args.members)
        ]
        group = StackedGroup(configs, [Path(tmp) / f"run{s}" for s in range(args.members)], capture=False)
        group.prepare([False] * args.members)
        for _ in range(2):  # lazy state
            group._body()
        _SCAN.floor.clear()
        counter = ByteCounter()
        group._advance_epochs()
        with counter:
            group._body()
    rows = [(name, counter.calls[name], counter.bytes[name]) for name in counter.bytes]
    rows += [(name, 0, b) for name, b in _SCAN.floor.items()]
    elementwise = sum(b for n, _, b in rows if n not in MATMULS)
    matmul = sum(b for n, _, b in rows if n in MATMULS)
    model = configs[0].model
    print(f"{args.arch} (its recipe: residual rank {configs[0].residual_rank}, model options {model}), {args.members} members, "
          f"batch {args.batch}, D = {args.dim}; torch {torch.__version__}")
    print(f"one group step: {sum(c for _, c, _ in rows):,} non-view ops; {elementwise / 1e9:.3f} GB moved outside matrix products "
          f"(scan at its floor), {matmul / 1e9:.3f} GB by matrix products")
    print("\n| op | calls | GB | share of non-matmul bytes |")
    print("| --- | ---: | ---: | ---: |")
    for name, calls, b in sorted(rows, key=lambda r: -r[2])[: args.top]:
        share = "" if name in MATMULS else f"{100 * b / elementwise:.1f} %"
        print(f"| {name} | {calls if calls else '—'} | {b / 1e9:.4f} | {share} |")


if __name__ == "__main__":
    main()
