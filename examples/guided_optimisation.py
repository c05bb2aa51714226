"""Guided optimisation: steer a flow prior toward embeddings that score high on a black-box objective.

    python examples/guided_optimisation.py --out runs/examples/optimise
    python examples/guided_optimisation.py --out runs/examples/optimise --size small   # seconds

The objective here is the cosine similarity to a held-out instruction of the builtin set (row 17 of
its validation split), a stand-in for any score computed from an embedding. Two methods spend the
same budget of evaluations: ``guided`` (a GP surrogate ranks candidates drawn from perturbed noise
of the best points so far, decoded by the flow, with the surrogate's gradient added to the velocity)
and ``prior`` (plain samples of the prior: the bar to clear). Both start from the same initial
design of prior samples. The report opens with the leaderboard and the best-so-far curves against
two ceilings: the best of the 800 training rows, and the top-k bound (how near the target the
training rows' main principal directions can get). ``fs.optimize`` and ``fs.optimization_report``
are what ``flowstudy optimize run RUN --objective ... --method guided --out DIR`` and
``flowstudy optimize report DIR...`` call.
"""

from __future__ import annotations

import flowstudy as fs
from _common import parse_args

OBJECTIVE = "cosine:builtin:sonar-gsm8k-1k:val:17"
SIZES = {
    "full": dict(train_steps=1000, budget=40, q=4, n_init=12, steps=16, pca_k=32, n_candidates=256, seeds=[0, 1]),
    "small": dict(train_steps=0, budget=8, q=2, n_init=4, steps=4, pca_k=3, n_candidates=16, seeds=[0]),
}


def prior(size: dict, out) -> str:
    """A trained MLP's run folder (full), or the Gaussian fit's closed-form flow (small: no training)."""
    if not size["train_steps"]:
        return "gaussian:builtin:sonar-gsm8k-1k"
    run = fs.fit("builtin:sonar-gsm8k-1k", arch="mlp", steps=size["train_steps"], out=out / "prior", device="cpu")
    return str(run.path)


def main(argv: list[str] | None = None):
    args = parse_args(__doc__, argv)
    size = SIZES[args.size]
    spec = prior(size, args.out)
    folders = []
    for method, options in (("guided", {"n_candidates": size["n_candidates"]}), ("prior", {})):
        for seed in size["seeds"]:
            folder = args.out / f"{method}_s{seed}"
            result = fs.optimize(spec, OBJECTIVE, out=folder, method=method, budget=size["budget"], q=size["q"],
                                 n_init=size["n_init"], seed=seed, steps=size["steps"], pca=size["pca_k"], options=options)
            print(f"{method:>6}, seed {seed}: best {result.best_score:.3f} after {len(result.y)} evaluations")
            folders.append(folder)
    paths = fs.optimization_report(folders, out=args.out, realism=args.size == "full")
    print(f"wrote {paths.markdown.name}, {paths.html.name} and {paths.figure.name}")
    return paths


if __name__ == "__main__":
    main()
