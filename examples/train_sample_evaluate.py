"""Train a prior on the builtin SONAR set, draw samples and evaluate them beside the baselines.

    python examples/train_sample_evaluate.py --out runs/examples/tse   # the MLP recipe (2000 steps)
    python examples/train_sample_evaluate.py --out runs/examples/tse --size small   # seconds

The evaluation compares the samples with real held-out rows and, with the same metrics, a Gaussian
fit to the training set, N(0, I) noise, copies of training rows and real held-out rows themselves
(see the concepts page for how to read it). The figure projects held-out rows, samples and the
Gaussian fit's samples onto the training set's top two principal directions (standardised space)
and compares their norms in the original space.
"""

from __future__ import annotations

import numpy as np

import flowstudy as fs
from _common import held_out_spec, parse_args, pca_axes, save_figure

SIZES = {
    "full": dict(arch="mlp", n=1000, train={}),  # the mlp recipe: 2000 steps at batch 256
    "small": dict(arch="mlp-tiny", n=64, train=dict(steps=30, batch_size=64, val_every=30)),
}


def main(argv: list[str] | None = None) -> fs.Evaluation:
    args = parse_args(__doc__, argv)
    size = SIZES[args.size]
    train = fs.load_dataset("builtin:sonar-gsm8k-1k")
    held_out = fs.load_dataset(held_out_spec())
    run = fs.fit(train, arch=size["arch"], out=args.out / "run", device="cpu", progress=False, **size["train"])
    print(run)
    x = run.sample(size["n"], seed=0)  # float32 [n, 1024], original space
    result = fs.evaluate(x, reference=held_out, train=train)
    print(result)
    plot(run, train.embeddings, held_out.embeddings, x, args.out / "samples.png")
    return result


def plot(run: fs.Run, train: np.ndarray, held_out: np.ndarray, x: np.ndarray, path) -> None:
    """PCA scatter (standardised space) and norm histograms (original space)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from flowstudy.metrics import baseline_samples

    std = lambda a: run.standardizer.transform(torch.as_tensor(a, dtype=torch.float64)).numpy()  # noqa: E731
    gaussian = baseline_samples(std(train), len(x), seed=0, names=["gaussian"])["gaussian"].numpy()
    mean, axes = pca_axes(std(train))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for rows, label, size in ((gaussian, "Gaussian fit", 4), (std(x), "samples", 4), (std(held_out), "held-out", 14)):
        p = (rows - mean) @ axes  # [n, 2]
        left.scatter(p[:, 0], p[:, 1], s=size, alpha=0.6, label=label)  # held-out (fewest rows) drawn on top
    left.set(title="top two principal directions (standardised)", xlabel="PC 1", ylabel="PC 2")
    left.legend()
    for rows, label in ((held_out, "held-out"), (x, "samples")):
        right.hist(np.linalg.norm(rows, axis=1), bins=40, alpha=0.6, density=True, label=label)
    right.set(title="row norm (original space)", xlabel="||x||")
    right.legend()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
