"""Bring your own embeddings: a ``.npy`` [N, D] with a ``.jsonl`` of texts beside it.

    python examples/own_embeddings.py --out runs/examples/own
    python examples/own_embeddings.py --out runs/examples/own --size small   # seconds

Any float array [N, D] works; texts are optional and pair with rows one to one (a ``.jsonl``
with a ``text`` field per line, or a ``.txt`` with one text per line, same stem as the array).
Here the file is written from the builtin set's training rows so that the example runs anywhere;
replace ``make_user_file`` with your own file. In-memory arrays work too:
``fs.fit(np.load("my.npy"), ...)``. The run then retrieves the training text nearest to each
sample (standardised Euclidean distance): a quick look at what the prior generates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import flowstudy as fs
from _common import parse_args, save_figure

SIZES = {
    "full": dict(n=500, train=dict(steps=600)),
    "small": dict(n=32, train=dict(steps=30, batch_size=64, val_every=30, model={"hidden_dim": 64, "num_layers": 2})),
}


def make_user_file(folder: Path) -> Path:
    """my_embeddings.npy [N, D] float32 and my_embeddings.jsonl ({"text": ...} per row)."""
    source = fs.load_dataset("builtin:sonar-gsm8k-1k")
    path = folder / "my_embeddings.npy"
    np.save(path, source.embeddings)
    path.with_suffix(".jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in source.texts), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> list[fs.NearestText]:
    args = parse_args(__doc__, argv)
    size = SIZES[args.size]
    data = fs.load_dataset(make_user_file(args.out))  # the texts come from the .jsonl beside it
    print(f"{data.source}: {data.n} rows, D = {data.dim}, texts: {data.texts is not None}")
    # no held-out file: a seeded 10 % of the rows is held out for validation
    run = fs.fit(data, arch="mlp", out=args.out / "run", device="cpu", progress=False, **size["train"])
    drawn = run.draw(size["n"], seed=0)
    matches = run.nearest_texts(drawn)
    for m in matches[:5]:
        print(f"sample {m.sample}: nearest training row {m.nearest_train_row} at {m.distance:.1f}: {m.text[:90]!r}")
    print(run.reconstruct(data.embeddings[:100], steps=20))
    plot([m.distance for m in matches], args.out / "nearest.png")
    return matches


def plot(distances: list[float], path: Path) -> None:
    """Histogram of each sample's distance to its nearest training row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(distances, bins=30)
    ax.set(title="distance from each sample to its nearest training row", xlabel="Euclidean distance (standardised space)")
    save_figure(fig, path)


if __name__ == "__main__":
    main()
