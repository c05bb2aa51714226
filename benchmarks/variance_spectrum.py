"""Where a run's samples put their variance: energy per band of the training data's principal directions.

For each run directory: sample (the default sampler, midpoint with 25 steps, seed 0) in the standardised space, project onto the
training rows' principal directions, and report the mean squared projection per band of directions
(top 20, 20-100, 100-400, 400-N, and the N..D directions the training rows do not span), beside the
held-out rows' and the training rows' own, plus the original-space norm ratio and the headline metrics.
A prior that shrinks shows up as missing energy in the top bands; one that never learned the data's
covariance spreads its energy evenly over all bands.

    flowstudy train --arch mamba-tiny --steps 800 --batch-size 128 --lr 1e-3 --out runs/m
    python benchmarks/variance_spectrum.py runs/m [runs/other ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from flowstudy.data import load_dataset
from flowstudy.data.resolve import default_val_spec
from flowstudy.metrics import evaluate_with_baselines, norm_ratio
from flowstudy.sampling import sample_standardized
from flowstudy.run import load_run


def bands_for(n_train: int, dim: int) -> list[tuple[int, int]]:
    cuts = [0, 20, 100, 400, min(n_train - 1, dim), dim]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def band_energy(z: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor, bands) -> list[float]:
    """Mean over rows of the squared projection onto each band of basis columns. z: [N, D]."""
    p = (z.double() - mean) @ basis  # [N, D]
    return [float(p[:, a:b].square().sum(1).mean()) for a, b in bands]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    rows = []
    for run_dir in args.runs:
        run = load_run(run_dir, device="cpu")
        data = run.config["data"]
        train = torch.from_numpy(load_dataset(data).embeddings).double()
        heldout_set = load_dataset(run.config.get("val") or default_val_spec(data))
        heldout = torch.from_numpy(heldout_set.embeddings).double()
        st = run.standardizer
        z_train, z_held = st.transform(train), st.transform(heldout)
        mean = z_train.mean(0)
        basis = torch.linalg.svd(z_train - mean, full_matrices=True).Vh.T  # [D, D] columns
        bands = bands_for(z_train.shape[0], z_train.shape[1])
        if not rows:
            rows.append(("held-out rows", band_energy(z_held, mean, basis, bands), 1.0, None))
            rows.append(("training rows", band_energy(z_train, mean, basis, bands), norm_ratio(train, heldout), None))
        z, _ = sample_standardized(run, args.n, seed=0)
        ratio = norm_ratio(st.inverse(z.double()), heldout)
        table = evaluate_with_baselines(z.float(), z_train.float(), z_held.float(), seed=0)
        rows.append((str(run_dir), band_energy(z, mean, basis, bands), ratio, table.rows[table.model_row]))
    head = " | ".join(f"dirs {a}-{b}" for a, b in bands)
    print(f"| source | {head} | norm ratio (original) | fidelity | novelty | density | coverage |")
    print("|---" * (len(bands) + 6) + "|")
    for name, energy, ratio, m in rows:
        metrics = " | ".join(f"{m[k]:.3f}" for k in ("fidelity", "novelty", "density", "coverage")) if m else " | ".join([""] * 4)
        print(f"| {name} | " + " | ".join(f"{e:.1f}" for e in energy) + f" | {ratio:.3f} | {metrics} |")


if __name__ == "__main__":
    main()
