"""The Mamba layers' causal convolution (flowstudy.models.ssm.branch.causal_conv_blc), forward and
backward on CPU: median and best of N timed calls, one torch thread. Run it with PYTHONPATH at two
trees' ``src`` one after the other (alternating) to compare them.

    PYTHONPATH=src python benchmarks/bench_causal_conv.py --rows 256 --seqlen 8 --channels 512
"""

from __future__ import annotations

import argparse

import torch
from timing import seconds  # benchmarks/

from flowstudy.models.ssm.branch import causal_conv_blc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--seqlen", type=int, default=8)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--width", type=int, default=4, help="the convolution's k (d_conv)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a tiny case, 3 calls: checks the script, not the speed")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.channels, args.repeats = 8, 16, 3
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, args.seqlen, args.channels, generator=gen, requires_grad=True)
    w = torch.randn(args.channels, 1, args.width, generator=gen, requires_grad=True)
    b = torch.randn(args.channels, generator=gen, requires_grad=True)
    cot = torch.randn(args.rows, args.seqlen, args.channels, generator=gen)

    def call() -> None:
        torch.autograd.grad((causal_conv_blc(x, w, b) * cot).sum(), (x, w, b))

    times = sorted(seconds(call, repeats=args.repeats, warmup=5, device="cpu"))
    print(f"[{args.rows}, {args.seqlen}, {args.channels}], k={args.width}: forward+backward median "
          f"{1e3 * times[len(times) // 2]:.2f} ms, best {1e3 * times[0]:.2f} ms ({args.repeats} calls, 1 thread)")


if __name__ == "__main__":
    main()
