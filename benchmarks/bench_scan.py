"""Selective-scan benchmark on one GPU: the PyTorch scan, mamba_ssm's selective_scan_fn and the
Triton scan, side by side, then the Mamba network per backend.

Problem: L = 16, d_inner = 512, N = 16 (the Mamba network's layer), batch 4096 and 256, fp32,
the [B, d, L] layout of selective_scan_fn, with z, D, delta_bias and softplus as the Mamba
layer calls it. Times are medians of triton.testing.do_bench (CUDA events, L2 flushed before
each repeat).

Memory floor: the bytes that must move, over the bandwidth of a measured 1 GiB device copy
(bytes read + written). Forward: u, delta, z read and out written ([B, d, L] each), B and C
read ([B, N, L] each), A, D, delta_bias read. Backward: u, delta, z and dout read, du, ddelta
and dz written, B and C read, dB and dC written, plus A, D, delta_bias and their gradients.
Forward+backward is the sum: nothing is kept between the two but the inputs.

    python benchmarks/bench_scan.py --out DIR [--sweep] [--batches 4096,256]

Writes DIR/results.json and DIR/results.md and prints the Markdown.

    python benchmarks/bench_scan.py --members "8,256;32,64"

times K stacked members (their own A, D, delta_bias) under torch.func.vmap against a loop over the
members and one shared-parameter call of K·B rows.

    python benchmarks/bench_scan.py --forward-shapes [B,L,DTYPE,LAYOUT;...] [--out DIR]

times the forward kernel's launch shapes (channels a tile, warps, rows a program) around
default_config's, side by side on the Mamba network's shapes.

    python benchmarks/bench_scan.py --backward-kernels [B,L,DTYPE,LAYOUT;...] [--out DIR]

times the tile backward against the Gluon backward (benchmarks/SCAN.md) and compares their gradients.

    python benchmarks/bench_scan.py --sass [KERNEL:BLOCK_D:WARPS ...] [--sass-seqlen L] [--sass-blc] [--sass-bf16]

needs no GPU: compiles the kernels for sm_90 (the H100) with Triton's bundled ptxas and prints,
per launch shape, registers, spill stack and the instructions of the compiled kernel per state
element of its tile (from cuobjdump), the cost model behind the default launch shapes. Kernels:
fwd, bwd, conv_fwd, conv_bwd, and gbwd (the Gluon backward, gbwd:LANES:1); --sass-blc and --sass-bf16 compile them as the Mamba
layer's call specialises them (unit strides, aligned pointers; bf16 activations). With SASS_IR=DIR
it also writes each kernel's TTGIR (the register layouts Triton chose), PTX and SASS to DIR.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flowstudy.models import create_model  # noqa: E402
from flowstudy.models.ssm import fused_status, selective_scan_torch  # noqa: E402
from flowstudy.models.ssm import triton_scan  # noqa: E402
from flowstudy.models.ssm.triton_scan import ScanConfig, default_config, selective_scan_triton  # noqa: E402

DIM, L, N = 512, 16, 16
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
DATASHEET_GBS = {"H100": 3350.0, "H200": 4800.0}


def env() -> dict[str, Any]:
    p = torch.cuda.get_device_properties(0)
    fused_ok, fused_why = fused_status()
    return {
        "device": torch.cuda.get_device_name(0), "sms": p.multi_processor_count,
        "torch": torch.__version__, "cuda": torch.version.cuda, "triton": triton.__version__,
        "python": platform.python_version(), "fused": fused_why if fused_ok else f"unavailable: {fused_why}",
    }


def ms(fn: Callable[[], Any]) -> float:
    return float(do_bench(fn, warmup=25, rep=150, return_mode="median"))


def copy_gbs() -> float:
    """Device-to-device copy of 1 GiB: (read + written bytes) / time."""
    x = torch.randn(2**28, device="cuda")
    y = torch.empty_like(x)
    t = ms(lambda: y.copy_(x))
    return 2 * x.numel() * 4 / t / 1e6


def inputs(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")  # noqa: E731
    return dict(
        u=r(batch, DIM, L), delta=0.5 * r(batch, DIM, L) - 2.0,  # softplus(delta + bias) ~ 0.1
        A=-torch.exp(0.5 * r(DIM, N)), B=r(batch, N, L), C=r(batch, N, L), D=r(DIM),
        z=r(batch, DIM, L), delta_bias=0.1 * r(DIM),
    )


def floor_bytes(batch: int) -> dict[str, int]:
    big, bc, small = batch * DIM * L * 4, batch * N * L * 4, (DIM * N + 2 * DIM) * 4
    fwd = 3 * big + 2 * bc + small + big
    bwd = (4 * big + 2 * bc + small) + (3 * big + 2 * bc + small)
    return {"fwd": fwd, "fwd+bwd": fwd + bwd}


def _fused_fn():
    from flowstudy.models.ssm.fused import fused_selective_scan

    return fused_selective_scan


def impls() -> dict[str, Callable[..., torch.Tensor]]:
    out = {"torch": selective_scan_torch, "triton": selective_scan_triton}
    if fused_status()[0]:
        out["fused"] = _fused_fn()
    return out


def time_scan(fn, x: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(forward ms, forward+backward ms) of fn on inputs x."""
    ins = {k: v.clone().requires_grad_() for k, v in x.items()}
    gout = torch.randn_like(x["u"])
    with torch.no_grad():
        t_fwd = ms(lambda: fn(**x, delta_softplus=True))
    leaves = [ins[k] for k in NAMES]

    def step():
        out = fn(**ins, delta_softplus=True)
        torch.autograd.grad(out, leaves, gout)

    return t_fwd, ms(step)


def parity(x: dict[str, torch.Tensor], ref_fn) -> dict[str, float]:
    """max over out and all gradients of ||triton - ref|| / ||ref|| (fp32, same inputs)."""
    errs = {}
    gout = torch.randn_like(x["u"])
    results = []
    for fn in (selective_scan_triton, ref_fn):
        ins = {k: v.clone().requires_grad_() for k, v in x.items()}
        out = fn(**ins, delta_softplus=True)
        results.append((out, torch.autograd.grad(out, [ins[k] for k in NAMES], gout)))
    (o, g), (o_ref, g_ref) = results
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    errs["out"] = rel(o, o_ref)
    for name, a, b in zip(NAMES, g, g_ref):
        errs[name] = rel(a, b)
    return errs


def sweep(x: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """Kernel times of launch shapes around the default one (forward, backward separately)."""
    base = default_config(x["u"].shape[0], DIM, L, N, torch.cuda.get_device_properties(0).multi_processor_count)
    args = [x[k] for k in NAMES]
    dout = torch.randn_like(x["u"])
    rows: list[dict[str, Any]] = []
    for bd, w in [(8, 1), (4, 1), (16, 1), (16, 2)]:
        cfg = ScanConfig(**{**base.__dict__, "fwd_block_d": bd, "fwd_warps": w})
        t = ms(lambda: triton_scan._forward(*args, True, cfg))
        rows.append({"kernel": "forward", "block_d": bd, "warps": w, "rows": cfg.fwd_rows, "ms": t})
        print("sweep", rows[-1], flush=True)
    for bd, w, splits, r in [(4, 1, 4, 8), (4, 1, 8, 16), (4, 1, 2, 4), (2, 1, 4, 8), (8, 2, 4, 8)]:
        cfg = ScanConfig(**{**base.__dict__, "bwd_block_d": bd, "bwd_warps": w, "bwd_splits": splits, "bwd_rows": r})
        t = ms(lambda: triton_scan._backward(*args, True, dout, cfg))
        rows.append({"kernel": "backward", "block_d": bd, "warps": w, "splits": splits, "rows": r, "ms": t})
        print("sweep", rows[-1], flush=True)
    return rows


def network(batch: int) -> dict[str, dict[str, float]]:
    """create_model("mamba", backend=...) forward and forward+backward at one batch size."""
    out = {}
    for backend in ["torch", "fused", "triton"]:
        if backend == "fused" and not fused_status()[0]:
            continue
        torch.manual_seed(0)
        model = create_model("mamba", backend=backend).cuda()
        xb, tb = torch.randn(batch, model.config["input_dim"], device="cuda"), torch.rand(batch, device="cuda")
        params = [p for p in model.parameters() if p.requires_grad]

        def step():
            loss = model(xb, tb).square().mean()
            torch.autograd.grad(loss, params)

        with torch.no_grad():
            t_fwd = ms(lambda: model(xb, tb))
        out[backend] = {"fwd_ms": t_fwd, "fwd_bwd_ms": ms(step)}
    return out


def markdown(res: dict[str, Any]) -> str:
    e = res["env"]
    lines = [
        f"Device: {e['device']} ({e['sms']} SMs); torch {e['torch']}, CUDA {e['cuda']}, triton {e['triton']}, "
        f"Python {e['python']}; fused: {e['fused']}.",
        f"Measured copy bandwidth: {res['copy_gbs']:.0f} GB/s (read + write of a 1 GiB device copy).",
        "",
    ]
    for b, r in res["scan"].items():
        fl = r["floor"]
        lines += [
            f"### Selective scan, batch {b}, d_inner {DIM}, L {L}, N {N}, fp32",
            "",
            f"Memory floor: forward {fl['fwd'] / 1e6:.0f} MB = {fl['fwd_ms']:.3f} ms; forward+backward "
            f"{fl['fwd+bwd'] / 1e6:.0f} MB = {fl['fwd+bwd_ms']:.3f} ms at the measured copy bandwidth.",
            "",
            "| backend | forward ms | fwd+bwd ms | forward: x floor | fwd+bwd: x floor | forward speed-up vs fused | fwd+bwd speed-up vs fused |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, t in r["times"].items():
            f = r["times"].get("fused")
            sf = f"{f['fwd'] / t['fwd']:.1f}x" if f else "n/a"
            sb = f"{f['fwd_bwd'] / t['fwd_bwd']:.1f}x" if f else "n/a"
            lines.append(
                f"| {name} | {t['fwd']:.3f} | {t['fwd_bwd']:.3f} | {t['fwd'] / fl['fwd_ms']:.2f} | "
                f"{t['fwd_bwd'] / fl['fwd+bwd_ms']:.2f} | {sf} | {sb} |"
            )
        lines += ["", "Parity, triton vs " + r["parity_ref"] + " (||a - b|| / ||b||): "
                  + ", ".join(f"{k} {v:.1e}" for k, v in r["parity"].items()), ""]
    if res.get("targets"):
        lines += ["### Targets (batch 4096)", ""] + [f"- {t}" for t in res["targets"]] + [""]
    if res.get("network"):
        lines += [f"### Mamba network (create_model(\"mamba\")), batch {res['network_batch']}, fp32", "",
                  "| backend | forward ms | fwd+bwd ms |", "| --- | --- | --- |"]
        lines += [f"| {k} | {v['fwd_ms']:.3f} | {v['fwd_bwd_ms']:.3f} |" for k, v in res["network"].items()]
        lines.append("")
    if res.get("sweep"):
        lines += ["### Launch-shape sweep, batch 4096 (kernel time, ms)", ""]
        for row in res["sweep"]:
            lines.append("- " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        lines.append("")
    return "\n".join(lines)


def targets(r: dict[str, Any]) -> list[str]:
    t, fl = r["times"], r["floor"]
    out = []
    if "fused" in t:
        f, k = t["fused"], t["triton"]
        out.append(f"forward >= 10x selective_scan_fn: {f['fwd'] / k['fwd']:.1f}x "
                   f"({'reached' if f['fwd'] / k['fwd'] >= 10 else 'not reached'})")
        out.append(f"forward+backward >= 5x: {f['fwd_bwd'] / k['fwd_bwd']:.1f}x "
                   f"({'reached' if f['fwd_bwd'] / k['fwd_bwd'] >= 5 else 'not reached'})")
    for key, name in (("fwd", "forward"), ("fwd_bwd", "forward+backward")):
        m = t["triton"][key] / fl["fwd_ms" if key == "fwd" else "fwd+bwd_ms"]
        out.append(f"{name} within 3x of the memory floor: {m:.2f}x ({'reached' if m <= 3 else 'not reached'})")
    return out


SASS_SHAPES = ["fwd:32:4", "fwd:16:2", "fwd:8:1", "fwd:4:1", "bwd:4:1", "bwd:8:1", "bwd:2:1", "bwd:8:2"]


UNIT_STRIDES = ("su_d", "sdt_d", "sz_d", "so_d", "sg_d", "sdo_d", "sB_n", "sC_n", "sA_n", "sp_n")
"""Channel and state strides that are 1 in the Mamba layer's [B, L, d] call (Triton specialises them)."""
BF16_POINTERS = ("u_ptr", "dt_ptr", "z_ptr", "B_ptr", "C_ptr", "out_ptr", "dout_ptr", "du_ptr", "ddt_ptr", "dz_ptr")


def sass_report(shapes: list[str], blc: bool = False, bf16: bool = False) -> None:
    """Compile each KERNEL:BLOCK_D:WARPS for sm_90 at L = N = 16, fp32, and print its resources.
    ``blc``: specialised as Triton specialises the Mamba layer's [B, L, d] call (unit channel and
    state strides, 16-byte aligned pointers, row and time strides multiples of 16); ``bf16``: its
    activations and their gradients in bf16 (the network under bf16 autocast)."""
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from flowstudy.models.ssm import triton_conv

    kernels = {"fwd": triton_scan._scan_fwd_kernel, "bwd": triton_scan._scan_bwd_kernel,
               "conv_fwd": triton_conv._conv_silu_fwd_kernel, "conv_bwd": triton_conv._conv_silu_bwd_kernel}
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    for spec in shapes:
        name, bd, warps = spec.split(":")
        source = ASTSource
        if name == "gbwd":  # the Gluon backward: BLOCK_D is its lanes a channel, its layouts are arguments
            from triton.experimental.gluon._runtime import GluonASTSource

            from flowstudy.models.ssm import gluon_scan

            fn, source = gluon_scan._scan_bwd_gluon_kernel, GluonASTSource
            block_d, sl, tile, tr, lt, log_l = gluon_scan.layouts(L, N, int(bd), channels_fast=blc)
            extra = dict(SL=sl, TILE=tile, TR=tr, LT=lt, LOG_L=log_l)
            bd = str(block_d)
        else:
            fn, extra = kernels[name], {}
        consts = dict(MEMBERS=False, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, L_PAD=L, N_PAD=N,
                      BLOCK_D=int(bd), CT=tl.float32, FAST=True, K=4, K_PAD=4, **extra)
        consts = {k: v for k, v in consts.items() if k in fn.arg_names}
        attrs = {}
        if blc:
            kept = {fn.arg_names[i] if isinstance(i, int) else i for i in (fn.do_not_specialize or ())}
            consts.update({a: 1 for a in UNIT_STRIDES if a in fn.arg_names and a not in kept})
            aligned = [a for a in fn.arg_names if a.endswith(("_ptr", "_part")) or re.fullmatch(r"s\w+_[bl]", a)]
            attrs = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in aligned}
        sig = {a: "constexpr" if a in consts else
               (("*bf16" if bf16 and a in BF16_POINTERS else "*fp32") if a.endswith(("_ptr", "_part")) else "i32")
               for a in fn.arg_names}
        if source is not ASTSource:  # Gluon's source takes constants by argument position
            consts = {(fn.arg_names.index(k),): v for k, v in consts.items()}
        k = triton.compile(source(fn=fn, signature=sig, constexprs=consts, attrs=attrs), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": int(warps)})
        with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
            f.write(k.asm["cubin"])
        res = subprocess.run([tools / "cuobjdump", "-res-usage", f.name], capture_output=True, text=True).stdout
        sass = subprocess.run([tools / "cuobjdump", "-sass", f.name], capture_output=True, text=True).stdout
        os.unlink(f.name)
        ops = re.findall(r"/\*[0-9a-f]{4,5}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", sass)
        mix = collections.Counter(ops)
        regs = re.search(r"REG:(\d+) STACK:(\d+)", res)
        per_thread = int(bd) * L * (1 if name.startswith("conv") else N) // (32 * int(warps))  # states, or conv outputs
        if os.environ.get("SASS_IR"):  # the layouts Triton chose (TTGIR), the PTX and the SASS, one file each
            out = Path(os.environ["SASS_IR"])
            out.mkdir(parents=True, exist_ok=True)
            for ext, text in (("ttgir", k.asm["ttgir"]), ("ptx", k.asm["ptx"]), ("sass", sass)):
                (out / f"{spec.replace(':', '_')}.{ext}").write_text(text)
        print(f"{spec:10s} regs {regs.group(1)} stack {regs.group(2):>5s} B  instructions {len(ops):5d} = "
              f"{len(ops) / per_thread:5.1f} per state element ({per_thread} a thread); "
              + " ".join(f"{o} {c}" for o, c in mix.most_common(int(os.environ.get("SASS_TOP", 6)))), flush=True)


def members(shapes: str) -> None:
    """K stacked members of B rows each (own A, D, delta_bias), Triton scan: torch.func.vmap (the
    members folded into the batch rows) against a loop over the members and one call of K·B rows
    with shared parameters; forward and forward+backward, eager (do_bench medians)."""
    from torch.func import vmap

    params = ("A", "D", "delta_bias")
    for shape in shapes.split(";"):
        K, B = (int(v) for v in shape.split(","))
        one = inputs(K * B)
        x = {k: (torch.stack([inputs(1, seed=m)[k] for m in range(K)]) if k in params else v.unflatten(0, (K, B))) for k, v in one.items()}
        ins = {k: v.clone().requires_grad_() for k, v in x.items()}
        gout = torch.randn_like(x["u"])
        scan = lambda **a: selective_scan_triton(**a, delta_softplus=True)  # noqa: E731
        ways = {
            "vmap": lambda a: vmap(lambda *t: scan(**dict(zip(NAMES, t))))(*(a[k] for k in NAMES)),
            "loop": lambda a: torch.stack([scan(**{k: a[k][m] for k in NAMES}) for m in range(K)]),
        }
        for name, fn in ways.items():
            with torch.no_grad():
                t_fwd = ms(lambda: fn(x))
            t_fb = ms(lambda: torch.autograd.grad(fn(ins), [ins[k] for k in NAMES], gout))
            print(f"K={K} x B={B} {name}: forward {t_fwd:.3f} ms, fwd+bwd {t_fb:.3f} ms", flush=True)
        t_fwd, t_fb = time_scan(selective_scan_triton, one)
        print(f"K·B={K * B} one call, shared parameters: forward {t_fwd:.3f} ms, fwd+bwd {t_fb:.3f} ms", flush=True)


FORWARD_CASES = "16384,8,bf16,blc;2304,8,fp32,blc;4096,16,fp32,bdl;256,16,fp32,bdl"
"""--forward-shapes: (batch, L, dtype, layout) of the Mamba network's scan: sampling at 16,384
rows under bf16 autocast (the study recipe's chunks of 8), a 9-member training group, the
issue's batch 4096 and the trainer's batch 256."""


SHAPES = {"16ch": dict(fwd_block_d=16), "32ch": dict(fwd_block_d=32), "64ch": dict(fwd_block_d=64),
          "64ch 2w": dict(fwd_block_d=64, fwd_warps=2), "4 rows": dict(fwd_rows=4)}
"""--forward-shapes: launch shapes of the forward kernel around default_config's."""


def case_inputs(case: str) -> tuple[dict[str, torch.Tensor], int, int, torch.dtype]:
    """(inputs, batch, L, dtype) of a "B,L,DTYPE,LAYOUT" case. Layout "blc": the [B, L, d] views
    the Mamba layer passes (u, z from one [B, L, 2d] tensor; B, C slices of one [B, L, R + 2N]);
    "bdl": contiguous [B, d, L]."""
    batch, seqlen, dtype, layout = case.split(",")
    batch, seqlen = int(batch), int(seqlen)
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g, device="cuda")  # noqa: E731
    if layout == "blc":
        xz, dbc = r(batch, seqlen, 2 * DIM).to(dt), r(batch, seqlen, 32 + 2 * N).to(dt)
        u, z = (t.transpose(1, 2) for t in xz.chunk(2, dim=-1))
        B, C = (t.transpose(1, 2) for t in dbc[..., 32:].split(N, dim=-1))
        delta = (0.5 * r(batch, seqlen, DIM) - 2.0).to(dt).transpose(1, 2)
    else:
        u, z, delta = r(batch, DIM, seqlen).to(dt), r(batch, DIM, seqlen).to(dt), (0.5 * r(batch, DIM, seqlen) - 2.0).to(dt)
        B, C = r(batch, N, seqlen).to(dt), r(batch, N, seqlen).to(dt)
    x = dict(u=u, delta=delta, A=-torch.exp(0.5 * r(DIM, N)), B=B, C=C, D=r(DIM), z=z, delta_bias=0.1 * r(DIM))
    return x, batch, seqlen, dt


def forward_shapes(cases: str) -> list[dict]:
    """The forward kernel at default_config's launch shape and at SHAPES, side by side on each
    case (see case_inputs): kernel ms (do_bench medians), the forward's memory floor, and the
    largest difference of any shape's output from the default's, relative to its largest entry."""
    gbs, rows = copy_gbs(), []
    for case in cases.split(";"):
        x, batch, seqlen, dt = case_inputs(case)
        size = dt.itemsize
        floor_ms = (4 * batch * DIM * seqlen * size + 2 * batch * N * seqlen * size) / gbs / 1e6
        cfg = default_config(batch, DIM, seqlen, N, torch.cuda.get_device_properties(0).multi_processor_count)
        row = {"case": case, "floor_ms": floor_ms, "default": dataclasses.astuple(cfg)}
        with torch.no_grad():
            row["default_ms"] = ms(lambda: triton_scan._forward(**x, softplus=True, cfg=cfg))
            ref, diff = triton_scan._forward(**x, softplus=True, cfg=cfg).float(), 0.0
            for label, fields in SHAPES.items():
                shape = dataclasses.replace(cfg, **fields)
                row[label] = ms(lambda: triton_scan._forward(**x, softplus=True, cfg=shape))
                out = triton_scan._forward(**x, softplus=True, cfg=shape).float()
                diff = max(diff, ((out - ref).abs().max() / ref.abs().max()).item())
        row["max_rel_diff"] = diff
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


BACKWARD_CASES = "4096,16,fp32,bdl;2304,8,fp32,blc;2304,8,bf16,blc;256,16,fp32,bdl"
"""--backward-kernels: the issue's batch 4096, a 9-member training group (fp32 and under bf16
autocast) and the trainer's batch 256."""

BACKWARDS = {
    "gluon 2 lanes": lambda c: dict(bwd_lanes=2), "gluon 4 lanes": lambda c: dict(bwd_lanes=4),
    "gluon 4 lanes, 168 registers": lambda c: dict(bwd_lanes=4, bwd_maxnreg=168),
    "gluon 4 lanes, 128 registers": lambda c: dict(bwd_lanes=4, bwd_maxnreg=128),
    "gluon 4 lanes, 2x splits": lambda c: dict(bwd_lanes=4, bwd_splits=2 * c.bwd_splits),
    "gluon 4 lanes, 2x rows": lambda c: dict(bwd_lanes=4, bwd_rows=2 * c.bwd_rows),
}
"""--backward-kernels: the Gluon backward's launch shapes beside default_config's tile backward."""


def backward_kernels(cases: str) -> list[dict]:
    """The tile backward at default_config's launch shape (its tile fields) against the Gluon
    backward's shapes (BACKWARDS), side by side on each case: kernel ms (do_bench medians, the torch sums of the
    partials included), the backward's memory floor (u, delta, z, dout read, du, ddelta, dz
    written, B, C read, dB, dC written) and each gradient's largest difference from the tile
    backward's, relative to its largest entry."""
    gbs, rows = copy_gbs(), []
    for case in cases.split(";"):
        x, batch, seqlen, dt = case_inputs(case)
        size = dt.itemsize
        floor_ms = (7 * batch * DIM * seqlen + 4 * batch * N * seqlen) * size / gbs / 1e6
        cfg = default_config(batch, DIM, seqlen, N, torch.cuda.get_device_properties(0).multi_processor_count)
        dout = torch.randn_like(x["u"])
        run = lambda c: triton_scan._backward(**x, softplus=True, dout=dout, cfg=c)  # noqa: E731
        row = {"case": case, "floor_ms": floor_ms, "default": dataclasses.astuple(cfg)}
        tile = dataclasses.replace(cfg, bwd_lanes=0)
        row["tile_ms"] = ms(lambda: run(tile))
        ref = [g.float() for g in run(tile)]
        for label, fields in BACKWARDS.items():
            shape = dataclasses.replace(cfg, **fields(cfg))
            try:
                row[label] = ms(lambda: run(shape))
                got = run(shape)
                row[label + " diff"] = {n: ((a.float() - b).abs().max() / b.abs().max()).item()
                                        for n, a, b in zip(NAMES, got, ref)}
            except Exception as e:  # a launch shape that does not compile is a result, not the end of the run
                row[label] = f"{type(e).__name__}: {str(e)[-400:]}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sass", nargs="*", metavar="KERNEL:BLOCK_D:WARPS",
                    help="compile for sm_90 (no GPU needed) and print resources; kernels fwd, bwd, conv_fwd, conv_bwd")
    ap.add_argument("--sass-seqlen", type=int, default=None, help="the sequence length the --sass kernels are compiled for (default L)")
    ap.add_argument("--sass-blc", action="store_true", help="--sass: specialised for the Mamba layer's [B, L, d] call (unit strides, aligned)")
    ap.add_argument("--sass-bf16", action="store_true", help="--sass: activations in bf16")
    ap.add_argument("--out")
    ap.add_argument("--batches", default="4096,256")
    ap.add_argument("--sweep", action="store_true", help="also time launch shapes around the default")
    ap.add_argument("--network-batch", type=int, default=256)
    ap.add_argument("--forward-shapes", nargs="?", const=FORWARD_CASES, metavar="B,L,DTYPE,LAYOUT[;...]",
                    help="time the forward kernel's launch shapes side by side (default cases: the network's), then stop")
    ap.add_argument("--backward-kernels", nargs="?", const=BACKWARD_CASES, metavar="B,L,DTYPE,LAYOUT[;...]",
                    help="time the tile backward against the Gluon backward side by side (default cases: the network's), then stop")
    ap.add_argument("--members", metavar="K,B[;K,B]", help="time K vmapped members of B rows against a loop and one shared call, then stop")
    args = ap.parse_args()
    if args.members:
        members(args.members)
        return
    for cases, fn, name in ((args.forward_shapes, forward_shapes, "forward_shapes"),
                            (args.backward_kernels, backward_kernels, "backward_kernels")):
        if cases:  # side-by-side kernel timings: DIR/NAME.json with the machine's description
            rows = fn(cases)
            if args.out:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                (Path(args.out) / f"{name}.json").write_text(json.dumps({"env": env(), "rows": rows}, indent=2))
            return
    if args.sass is not None:
        if args.sass_seqlen:
            global L
            L = args.sass_seqlen
        sass_report(args.sass or SASS_SHAPES, args.sass_blc, args.sass_bf16)
        return
    if not args.out:
        ap.error("--out is required (or --sass)")
    torch.backends.cuda.matmul.allow_tf32 = False
    res: dict[str, Any] = {"env": env(), "copy_gbs": copy_gbs(), "scan": {}}
    print(res, flush=True)
    for b in (int(s) for s in args.batches.split(",")):
        x = inputs(b)
        fl = floor_bytes(b)
        fl["fwd_ms"] = fl["fwd"] / res["copy_gbs"] / 1e6
        fl["fwd+bwd_ms"] = fl["fwd+bwd"] / res["copy_gbs"] / 1e6
        times = {}
        for name, fn in impls().items():
            t_fwd, t_fb = time_scan(fn, x)
            times[name] = {"fwd": t_fwd, "fwd_bwd": t_fb}
            print(f"batch {b} {name}: forward {t_fwd:.3f} ms, fwd+bwd {t_fb:.3f} ms", flush=True)
        ref = "fused" if fused_status()[0] else "torch"
        res["scan"][b] = {"floor": fl, "times": times, "parity_ref": ref, "parity": parity(x, impls()[ref])}
        print(f"batch {b} floor fwd {fl['fwd_ms']:.3f} ms, fwd+bwd {fl['fwd+bwd_ms']:.3f} ms; parity", res["scan"][b]["parity"], flush=True)
        if b == 4096:
            res["targets"] = targets(res["scan"][b])
            if args.sweep:
                res["sweep"] = sweep(x)
        del x
        torch.cuda.empty_cache()
    res["network_batch"] = args.network_batch
    res["network"] = network(args.network_batch)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    md = markdown(res)
    (out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
