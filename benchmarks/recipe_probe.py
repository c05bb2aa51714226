"""Do a run's samples beat the Gaussian fit? One table of every sample metric, with baselines.

For each run directory: draw samples (solver, steps, EMA or raw weights, best or last checkpoint),
map them to the ORIGINAL space with the run's standardiser and from there into one common
evaluation space (the training split z-scored with the default std floor), so runs trained with
different standardisers are measured alike. Against a reference set (the 400-row test split) it
reports, beside the Gaussian fit, noise and real held-out rows:

- norm: mean original-space row norm over the reference's (target within 2 %);
- mmd: unbiased RBF MMD^2 (flowstudy.metrics.mmd, bandwidths 0.5/1/2 x the training median distance);
- auc_lin / auc_knn: cross-validated linear and 5-NN classifier two-sample AUCs (0.5 = indistinguishable);
- fidelity, novelty, density, coverage (flowstudy.metrics.Evaluator);
- e0-20 ... : variance per band of the training rows' principal directions
  (benchmarks/variance_spectrum.py's bands).

The distribution metrics use the Evaluator's protocol: the reference is split 5 times into halves A
and B, every source is subsampled to |B| rows and compared with A; the ``heldout`` row is B itself.
Runs named ``NAME-sSEED`` are also averaged per NAME (mean and spread over seeds).

    flowstudy train --arch mlp --out runs/recipes/mlp-s0
    python benchmarks/recipe_probe.py runs/recipes/mlp-s0 --solver midpoint --steps 25 --controls
    python benchmarks/recipe_probe.py runs/recipes/mlp-base-s0 --net-window 0.2 0.5 --no-baselines
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variance_spectrum import band_energy, bands_for  # noqa: E402

from flowstudy.data import Standardizer, load_dataset  # noqa: E402
from flowstudy.metrics import Evaluator, baseline_samples, c2st_auc, norm_ratio  # noqa: E402
from flowstudy.metrics.seeding import derived_rng, derived_seed  # noqa: E402
from flowstudy.sampling import sample_standardized  # noqa: E402
from flowstudy.run import load_run  # noqa: E402

NEIGHBOUR_METRICS = ("fidelity", "novelty", "density", "coverage", "mmd", "c2st_auc")
COLUMNS = ("norm", "mmd", "auc_lin", "auc_knn", "fidelity", "novelty", "density", "coverage")


class Probe:
    """Metrics of original-space sample sets [N, D] against a reference, in one evaluation space."""

    def __init__(self, train: np.ndarray, reference: np.ndarray, seed: int = 0):
        self.train_orig = torch.from_numpy(train).double()
        self.ref_orig = torch.from_numpy(reference).double()
        self.space = Standardizer.fit(self.train_orig)
        self.z_train = self.space.transform(self.train_orig)
        self.z_ref = self.space.transform(self.ref_orig)
        self.seed = seed
        self.ev = Evaluator(self.z_train, self.z_ref, seed=seed, metrics=NEIGHBOUR_METRICS)
        self.mean = self.z_train.mean(0)
        self.basis = torch.linalg.svd(self.z_train - self.mean, full_matrices=True).Vh.T  # [D, D] columns
        self.bands = bands_for(*self.z_train.shape)

    def _knn_auc(self, rows_for_split) -> float:
        """5-NN C2ST AUC averaged over the Evaluator's distribution splits (n_eval rows vs A)."""
        aucs = []
        for i, split in enumerate(self.ev.dist_splits):
            s = rows_for_split(split)
            if s.shape[0] > self.ev.n_eval:
                s = s[np.sort(derived_rng(self.seed, "probe-knn", i).choice(s.shape[0], self.ev.n_eval, replace=False))]
            a = self.z_ref[split.reference]
            aucs.append(c2st_auc(s, a, seed=derived_seed(self.seed, "probe-knn-c2st", i), classifier="knn").auc)
        return float(np.mean(aucs))

    def row(self, x_orig: torch.Tensor) -> dict[str, float]:
        """All metrics of original-space rows x_orig [N, D]."""
        z = self.space.transform(x_orig.double())
        out = self.ev.evaluate(z)
        out["auc_lin"] = out.pop("c2st_auc")
        out["auc_knn"] = self._knn_auc(lambda split: z)
        out["norm"] = norm_ratio(x_orig, self.ref_orig)
        out.update(self._spectrum(z))
        return out

    def heldout_row(self) -> dict[str, float]:
        out = self.ev.evaluate_heldout()
        out["auc_lin"] = out.pop("c2st_auc")
        out["auc_knn"] = self._knn_auc(lambda split: self.z_ref[split.real])
        out["norm"] = 1.0
        out.update(self._spectrum(self.z_ref))
        return out

    def baseline_rows(self, n: int) -> dict[str, dict[str, float]]:
        rows = {}
        for name, z in baseline_samples(self.z_train, n, self.seed, names=["gaussian", "noise"]).items():
            rows[name] = self.row(self.space.inverse(z))
        return rows

    def _spectrum(self, z: torch.Tensor) -> dict[str, float]:
        energy = band_energy(z, self.mean, self.basis, self.bands)
        return {f"e{a}-{b}": e for (a, b), e in zip(self.bands, energy)}


def run_samples(run_dir: Path, n: int, args) -> torch.Tensor:
    """n samples of a run in the original space, float64 [n, D]."""
    run = load_run(run_dir, checkpoint=args.which, ema=not args.raw, device="cpu")
    if args.net_window is not None:
        run.model = NetWindow(run.model, *args.net_window)
    z, _ = sample_standardized(run, n, solver=args.solver, steps=args.steps, seed=args.sample_seed)
    return run.standardizer.inverse(z.double())


class NetWindow(torch.nn.Module):
    """A base-field run's field with its network switched on only for lo <= t < hi (diagnostic):
    v = base(x, t) + 1[lo <= t < hi] net(x, t). Shows at which times the network moves the samples."""

    def __init__(self, field: torch.nn.Module, lo: float, hi: float):
        super().__init__()
        if not hasattr(field, "base"):
            raise SystemExit("--net-window needs a run trained with --base-field gaussian")
        self.field, self.lo, self.hi = field, lo, hi

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0])  # [B]
        on = ((t >= self.lo) & (t < self.hi)).to(x.dtype)[:, None]  # [B, 1]
        return self.field.base(x, t) + on * self.field.net(x, t)


def control_rows(probe: Probe, n: int) -> dict[str, dict[str, float]]:
    """What the metrics make of known distortions of the Gaussian fit and of the training rows:
    the aug-0.3 training target (rows + N(0, 0.3^2) in standardised space), and training rows and
    Gaussian draws with the top-20 principal directions' spread scaled by 0.9 (81 % of their variance)."""
    draws = baseline_samples(probe.z_train, n, probe.seed, names=["gaussian", "copies"])
    noise = torch.randn(n, probe.z_train.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(probe.seed))
    top = probe.basis[:, :20]  # [D, 20]

    def shrink_top(z: torch.Tensor, f: float) -> torch.Tensor:
        return z + (f - 1) * ((z - probe.mean) @ top) @ top.T

    zs = {
        "ctrl: train rows + N(0, 0.3^2)": draws["copies"] + 0.3 * noise,
        "ctrl: train rows, top-20 std x0.9": shrink_top(draws["copies"], 0.9),
        "ctrl: gaussian, top-20 std x0.9": shrink_top(draws["gaussian"], 0.9),
    }
    return {name: probe.row(probe.space.inverse(z)) for name, z in zs.items()}


def fmt_table(rows: dict[str, dict[str, float]], spread: dict[str, dict[str, float]] | None = None) -> str:
    keys = list(COLUMNS) + [k for k in next(iter(rows.values())) if k.startswith("e")]
    lines = ["| source | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, m in rows.items():
        cells = []
        for k in keys:
            digits = 4 if k == "mmd" else (1 if k.startswith("e") else 3)
            cell = f"{m[k]:.{digits}f}"
            if spread and name in spread and k in COLUMNS:
                cell += f" ±{spread[name][k]:.{digits}f}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--reference", default="/work/shared/data/sonar-gsm8k-1k/test.npy")
    parser.add_argument("--data", default="builtin:sonar-gsm8k-1k", help="training split (for the space and baselines)")
    parser.add_argument("--n", type=int, default=1000, help="samples per run")
    parser.add_argument("--solver", default="euler")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--which", default="best", choices=["best", "last"])
    parser.add_argument("--raw", action="store_true", help="sample the raw weights instead of the EMA")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--controls", action="store_true", help="add rows for known distortions (control_rows)")
    parser.add_argument("--net-window", nargs=2, type=float, metavar=("LO", "HI"),
                        help="base-field runs: network on only for LO <= t < HI")
    args = parser.parse_args()
    torch.set_num_threads(1)
    probe = Probe(load_dataset(args.data).embeddings, load_dataset(args.reference).embeddings)
    rows: dict[str, dict[str, float]] = {}
    if not args.no_baselines:
        rows["heldout (real)"] = probe.heldout_row()
        rows.update(probe.baseline_rows(args.n))
    if args.controls:
        rows.update(control_rows(probe, args.n))
    for run_dir in args.runs:
        rows[run_dir.name] = probe.row(run_samples(run_dir, args.n, args))
        print(fmt_table({run_dir.name: rows[run_dir.name]}), flush=True, file=sys.stderr)
    window = f", network only for {args.net_window[0]} <= t < {args.net_window[1]}" if args.net_window else ""
    print(f"solver {args.solver}-{args.steps}, {args.which} checkpoint, {'raw' if args.raw else 'EMA'} weights, "
          f"{args.n} samples, reference {args.reference}{window}")
    print(fmt_table(rows))
    groups: dict[str, list[str]] = defaultdict(list)
    for name in rows:
        groups[re.sub(r"-s\d+$", "", name)].append(name)
    multi = {g: names for g, names in groups.items() if len(names) > 1}
    if multi:
        means = {f"{g} ({len(v)} seeds)": {k: float(np.mean([rows[n][k] for n in v])) for k in rows[v[0]]} for g, v in multi.items()}
        spread = {f"{g} ({len(v)} seeds)": {k: float(np.std([rows[n][k] for n in v], ddof=1)) for k in rows[v[0]]} for g, v in multi.items()}
        print("\nmean ± std over seeds")
        print(fmt_table(means, spread))


if __name__ == "__main__":
    main()
