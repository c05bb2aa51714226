"""GPU benchmark of the Mamba velocity network: fused (mamba_ssm) vs PyTorch scan.

1. Parity: the default network (output layer perturbed so gradients flow), the same
   weights run with backend "torch" and "fused": max abs / max rel error of outputs and
   of every parameter gradient, fp32.
2. A state_dict trained for a few steps with one backend, loaded into the other (and a
   single layer's state_dict into mamba_ssm.Mamba, strict), outputs compared.
3. Speed: forward+backward and forward-only time of the default network with each
   backend, at batch 256 and 4096, fp32 and bf16 autocast; CUDA events around each
   repeat after warm-up, median of repeats; peak memory.

Writes results.json and results.md to --out (a directory) and prints the Markdown.

    python benchmarks/bench_mamba_gpu.py --out benchmarks/mamba_gpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flowstudy.models import count_parameters  # noqa: E402
from flowstudy.models.mamba_velocity import MambaVelocityNetwork  # noqa: E402
from flowstudy.models.ssm import MambaLayer, fused_status  # noqa: E402


def build(seed: int = 0, backend: str = "torch") -> MambaVelocityNetwork:
    torch.manual_seed(seed)
    net = MambaVelocityNetwork(backend=backend)
    torch.nn.init.normal_(net.output_proj.weight, std=0.05)
    return net.cuda()


def _max_errors(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    diff = (a.float() - b.float()).abs()
    rel = diff / b.float().abs().clamp_min(1e-6)
    return diff.max().item(), rel.max().item()


def _run(net, x, t):
    net.zero_grad(set_to_none=True)
    out = net(x, t)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in net.named_parameters()}


def parity(batch: int) -> dict[str, Any]:
    net = build()
    x, t = torch.randn(batch, 1024, device="cuda"), torch.rand(batch, device="cuda")
    out_t, grads_t = _run(net, x, t)
    net.set_backend("fused")
    out_f, grads_f = _run(net, x, t)
    abs_o, rel_o = _max_errors(out_f, out_t)
    grad_errs = {n: _max_errors(grads_f[n], grads_t[n]) for n in grads_t}
    worst = max(grad_errs, key=lambda n: grad_errs[n][0])
    ok = torch.allclose(out_f, out_t, rtol=6e-4, atol=2e-3) and all(
        torch.allclose(grads_f[n], grads_t[n], rtol=6e-4, atol=2e-3) for n in grads_t
    )
    return {
        "batch": batch, "output_max_abs": abs_o, "output_max_rel": rel_o,
        "grad_max_abs": grad_errs[worst][0], "grad_max_abs_param": worst,
        "grad_max_rel": max(e[1] for e in grad_errs.values()),
        "within_rtol_6e-4_atol_2e-3": ok,
    }


def state_dict_moves() -> dict[str, Any]:
    fused = build(seed=3, backend="fused")
    opt = torch.optim.Adam(fused.parameters(), lr=1e-3)
    x, t = torch.randn(64, 1024, device="cuda"), torch.rand(64, device="cuda")
    for _ in range(5):
        opt.zero_grad()
        fused(x, t).square().mean().backward()
        opt.step()
    on_cpu = MambaVelocityNetwork(backend="torch")
    on_cpu.load_state_dict({k: v.cpu() for k, v in fused.state_dict().items()})
    with torch.no_grad():
        err = _max_errors(on_cpu(x.cpu(), t.cpu()), fused(x, t).cpu())
    result: dict[str, Any] = {"fused_cuda_to_torch_cpu_max_abs": err[0], "max_rel": err[1]}
    try:
        from mamba_ssm.modules.mamba_simple import Mamba

        layer = MambaLayer(256, backend="torch").cuda()
        ref = Mamba(256).cuda()
        ref.load_state_dict(layer.state_dict(), strict=True)
        h = torch.randn(32, 16, 256, device="cuda")
        with torch.no_grad():
            result["layer_into_mamba_ssm_max_abs"] = _max_errors(ref(h), layer(h))[0]
    except Exception as exc:  # report, do not hide
        result["layer_into_mamba_ssm_error"] = f"{type(exc).__name__}: {exc}"
    return result


def time_one(net, batch: int, bf16: bool, backward: bool, warmup: int, repeats: int) -> float:
    x, t = torch.randn(batch, 1024, device="cuda"), torch.rand(batch, device="cuda")

    def call() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = net(x, t)
        if backward:
            out.float().square().mean().backward()
            net.zero_grad(set_to_none=True)

    ctx = torch.enable_grad() if backward else torch.no_grad()
    with ctx:
        for _ in range(warmup):
            call()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def speed(backends: list[str], batches: list[int], warmup: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for backend in backends:
        for batch in batches:
            for bf16 in (False, True):
                net = build(backend=backend)
                torch.cuda.reset_peak_memory_stats()
                fb = time_one(net, batch, bf16, True, warmup, repeats)
                peak = torch.cuda.max_memory_allocated() / 2**20
                fwd = time_one(net, batch, bf16, False, warmup, repeats)
                rows.append({"backend": backend, "batch": batch, "precision": "bf16" if bf16 else "fp32",
                             "fwd_bwd_ms": fb, "fwd_ms": fwd, "peak_mib": peak})
                print(rows[-1], file=sys.stderr, flush=True)
                del net
                torch.cuda.empty_cache()
    return rows


def to_markdown(res: dict[str, Any]) -> str:
    lines = [f"# Mamba velocity network on {res['device']}", "",
             f"torch {res['torch']}; fused backend: {res['fused'][0]} ({res['fused'][1]}); "
             f"{res['params']:,} parameters (default network).", ""]
    if res.get("parity"):
        lines += ["## Parity, fused vs torch (fp32, same weights)", "",
                  "| batch | out max abs | out max rel | grad max abs (param) | grad max rel | within tol |",
                  "| ---: | ---: | ---: | --- | ---: | --- |"]
        for p in res["parity"]:
            lines.append(f"| {p['batch']} | {p['output_max_abs']:.2e} | {p['output_max_rel']:.2e} | "
                         f"{p['grad_max_abs']:.2e} ({p['grad_max_abs_param']}) | {p['grad_max_rel']:.2e} | "
                         f"{p['within_rtol_6e-4_atol_2e-3']} |")
        lines += ["", f"State dict moved between backends: `{json.dumps(res['state_dict'])}`", ""]
    lines += ["## Speed (median of repeats, CUDA events)", "",
              "| backend | batch | precision | fwd+bwd (ms) | forward (ms) | peak memory (MiB) |",
              "| --- | ---: | --- | ---: | ---: | ---: |"]
    for r in res["speed"]:
        lines.append(f"| {r['backend']} | {r['batch']} | {r['precision']} | {r['fwd_bwd_ms']:.2f} | "
                     f"{r['fwd_ms']:.2f} | {r['peak_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("mamba_gpu_results"), help="output directory")
    parser.add_argument("--batches", type=int, nargs="*", default=[256, 4096])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_mamba_gpu: CUDA is not available; this benchmark needs an NVIDIA GPU.", file=sys.stderr)
        return 2
    fused_ok, reason = fused_status()
    res: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                           "fused": [fused_ok, reason], "params": count_parameters(MambaVelocityNetwork())}
    if fused_ok:
        res["parity"] = [parity(256), parity(1024)]
        res["state_dict"] = state_dict_moves()
    else:
        print(f"fused backend unavailable ({reason}); timing the torch backend only", file=sys.stderr)
    backends = ["torch", "fused"] if fused_ok else ["torch"]
    res["speed"] = speed(backends, args.batches, args.warmup, args.repeats)
    text = to_markdown(res)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2))
    (args.out / "results.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
