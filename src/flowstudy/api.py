"""The Python API: data, training, sampling, evaluation and studies in a few calls.

    import flowstudy as fs
    train = fs.load_dataset("builtin:sonar-gsm8k-1k")
    run = fs.fit(train, arch="mlp", out="runs/mlp")           # or fs.load_run("runs/mlp")
    x = run.sample(1000, seed=0)                                # numpy float32 [1000, D], original space
    print(fs.evaluate(x, reference="builtin:sonar-gsm8k-1k:val", train=train))

``fit`` and ``run_study`` are named apart from the subpackages :mod:`flowstudy.train` and
:mod:`flowstudy.study`, which an attribute of the same name would shadow. The ``flowstudy``
command's train, sample, reconstruct and evaluate call these same functions.
Wherever a dataset spec string is accepted (see :mod:`flowstudy.data.loading`), an in-memory
numpy array or torch tensor [N, D] and an :class:`~flowstudy.data.EmbeddingSet` are accepted
too. Everything handed back — samples, reconstructions — is in the ORIGINAL embedding space;
networks work in the standardised space of their training split.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from flowstudy import _API_NAMES
from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.data import EmbeddingSet, check_same_dim
from flowstudy.data import load_dataset as _load_spec
from flowstudy.data.validation import check_embeddings, check_texts
from flowstudy.errors import ConfigError, DataError
from flowstudy.io import atomic_save_npy, atomic_write_text

DataLike = Union[str, os.PathLike, np.ndarray, torch.Tensor, EmbeddingSet]
"""A dataset spec (``builtin:NAME[:SPLIT]``, ``PATH``, ``PATH:KEY``, ``DIR:SPLIT``), a path, an
array or tensor [N, D], or an :class:`~flowstudy.data.EmbeddingSet`."""

# The package top re-exports these names lazily; the list lives there, once.
__all__ = list(_API_NAMES)


# ----------------------------------------------------------------------------- data
def load_dataset(
    data: DataLike, *, texts: str | os.PathLike | list[str] | None = None, allow_nonfinite: bool = False
) -> EmbeddingSet:
    """An embedding set from a spec string, a path, an array/tensor [N, D] or an EmbeddingSet.

    Rows are validated (2-D, numeric, finite unless ``allow_nonfinite``) and returned as float32
    [N, D] in the units they were given in. ``texts``: a ``.jsonl``/``.txt`` path or a list of N
    strings. In-memory arrays get the source name ``"<array NxD>"`` (``"<tensor NxD>"``).
    """
    if isinstance(data, EmbeddingSet):
        return data if texts is None else _with_texts(data.embeddings, texts, data.source)
    if isinstance(data, (str, os.PathLike)):
        text_path = None if texts is None or isinstance(texts, list) else texts
        loaded = _load_spec(str(data), texts=text_path, allow_nonfinite=allow_nonfinite)
        return loaded if not isinstance(texts, list) else _with_texts(loaded.embeddings, texts, loaded.source)
    if isinstance(data, torch.Tensor):
        array, kind = data.detach().cpu().numpy(), "tensor"
    elif isinstance(data, np.ndarray):
        array, kind = data, "array"
    else:
        raise DataError(f"data must be a spec string, a path, a numpy array, a torch tensor or an EmbeddingSet; got {type(data).__name__}")
    source = f"<{kind} {'x'.join(map(str, array.shape))}>"
    array = check_embeddings(array, source, allow_nonfinite=allow_nonfinite)
    return _with_texts(array, texts, source) if texts is not None else EmbeddingSet(array, None, source)


def _with_texts(array: np.ndarray, texts: str | os.PathLike | list[str], source: str) -> EmbeddingSet:
    from flowstudy.data import read_texts

    text_list, text_source = (list(texts), f"texts of {source}") if isinstance(texts, list) else (read_texts(Path(texts)), str(texts))
    return EmbeddingSet(array, check_texts(text_list, array.shape[0], text_source, source), source)


def _reloads(data: EmbeddingSet) -> bool:
    """True when ``data.source`` is a spec that still loads to exactly these rows (and texts)."""
    try:
        again = _load_spec(data.source)
    except (DataError, OSError):
        return False
    same_rows = again.embeddings.shape == data.embeddings.shape and np.array_equal(again.embeddings, data.embeddings)
    return same_rows and (data.texts is None or again.texts == data.texts)


def _as_spec(data: DataLike, folder: Path, name: str) -> str:
    """A spec string for ``data``: itself, its source when that reloads, else ``folder/name.npy``.

    In-memory rows are written (atomically, with a ``.jsonl`` of their texts) so that a run or an
    evaluation can name them the way every command does.
    """
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    data = load_dataset(data)
    if _reloads(data):
        return data.source
    path = folder / f"{name}.npy"
    atomic_save_npy(path, data.embeddings)
    if data.texts is not None:
        atomic_write_text(path.with_suffix(".jsonl"), "".join(json.dumps({"text": t}) + "\n" for t in data.texts))
    return str(path)


# ----------------------------------------------------------------------------- training
def fit(
    data: DataLike | None = None,
    *,
    out: str | os.PathLike,
    arch: str | None = None,
    val: DataLike | None = None,
    config: str | os.PathLike | dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: tuple[Any, ...] = (),
    **options: Any,
) -> Run:
    """Train a flow-matching prior into the run directory ``out`` and return it as a :class:`Run`.

    ``data``: the training rows (default ``builtin:sonar-gsm8k-1k``); ``val``: held-out rows for
    validation and early stopping (default: the split beside ``data``, else a seeded 10 % of it).
    Rows given in memory are saved under ``out/data/`` so the run can be resumed and evaluated
    from the command line. ``config``: a TOML/YAML/JSON file or a dict of options; ``options``:
    any :class:`~flowstudy.train.TrainConfig` field (``steps``, ``lr``, ``batch_size``, ``seed``,
    ``device``, ``flow``, ``aug``, ``base_field``, ``model`` ...). Precedence: the architecture's
    recipe < ``config`` < ``options``. ``resume=True`` continues ``out`` from its last checkpoint
    with its saved configuration.
    """
    from flowstudy.train import Trainer, read_config_file, resolve_config
    from flowstudy.train.config import TrainConfig

    out = Path(out)
    if resume and (out / "config.json").exists():
        saved = json.loads((out / "config.json").read_text())
        cfg = TrainConfig.from_dict({k: v for k, v in saved.items() if k not in ("versions", "total_steps")}, f"{out}/config.json")
    else:
        overrides = dict(options, arch=arch)
        if data is not None:
            overrides["data"] = _as_spec(data, out / "data", "train")
        if val is not None:
            overrides["val"] = _as_spec(val, out / "data", "val")
        from_file = isinstance(config, (str, os.PathLike))
        file_values = read_config_file(config) if from_file else config
        cfg = resolve_config(file_values, overrides, str(config) if from_file else "options")
    result = Trainer(cfg, out, callbacks=list(callbacks), progress=progress).fit(resume=resume)
    return Run(out, device=cfg.device, result=result)


def load_run(run_dir: str | os.PathLike, *, checkpoint: str = "best", device: str = "auto") -> Run:
    """A trained run from its directory: ``checkpoints/{checkpoint}.pt`` (EMA weights) on ``device``.

    ``checkpoint``: ``best`` (lowest validation loss; falls back to ``last``) or ``last``.
    Raises CheckpointError when the directory holds no usable run.
    """
    run = Run(Path(run_dir), checkpoint=checkpoint, device=device)
    run.loaded  # fail here, not at the first sample
    return run


@dataclass(frozen=True)
class Samples:
    """Samples from a run. x: float32 [n, D], original space; z: float32 [n, D], standardised."""

    x: np.ndarray
    z: torch.Tensor
    nfe: int  # network evaluations per sample
    solver: str
    steps: int
    seed: int

    def __repr__(self) -> str:
        return f"Samples({self.x.shape[0]}x{self.x.shape[1]}, {self.solver} {self.steps} steps, {self.nfe} NFE, seed {self.seed})"


@dataclass(frozen=True)
class NearestText:
    """The training row nearest to one sample (Euclidean, standardised space) and its text."""

    sample: int
    nearest_train_row: int
    distance: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (one line of ``flowstudy sample --nearest-text``'s ``.texts.jsonl``)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReconstructionReport:
    """Round trip data -> noise -> data through a run's ODE, errors in the ORIGINAL space.

    ``mse_*``: mean squared error per element (original units²); ``cosine_*``: cosine similarity
    of each row with its reconstruction; ``relative_error_mean``: mean ||x − x'|| / ||x||;
    ``noise_norm_mean``: mean norm of the recovered noise, near ``noise_norm_expected`` = √D when
    the flow is a good bijection onto N(0, I).
    """

    source: str
    n: int
    solver: str
    steps: int
    nfe_round_trip: int
    mse_mean: float
    mse_median: float
    cosine_mean: float
    cosine_min: float
    relative_error_mean: float
    noise_norm_mean: float
    noise_norm_expected: float

    def to_dict(self) -> dict[str, Any]:
        """The figures as a dict (``flowstudy reconstruct --json``), without the source."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "source"}

    def __repr__(self) -> str:
        return (
            f"Reconstruction of {self.source} ({self.n} rows, {self.solver} {self.steps} steps each way, {self.nfe_round_trip} NFE): "
            f"MSE {self.mse_mean:.3g}, cosine {self.cosine_mean:.6f} (min {self.cosine_min:.6f}), "
            f"relative error {self.relative_error_mean:.3g}, noise norm {self.noise_norm_mean:.2f} (√D = {self.noise_norm_expected:.2f})"
        )


class Run:
    """A run directory and its trained velocity field (loaded on first use).

    ``run.sample(n)`` -> float32 [n, D] in the original space; ``run.draw(n)`` the same with
    the standardised samples and the solver's NFE; ``run.reconstruct(data)`` the ODE round trip.
    """

    def __init__(self, path: str | os.PathLike, *, checkpoint: str = "best", device: str = "auto", result: Any = None):
        self.path = Path(path)
        self.checkpoint = checkpoint
        self.device_name = device
        self.result = result  # flowstudy.train.TrainResult when this object trained the run
        self._loaded = None

    @property
    def loaded(self):
        """The :class:`~flowstudy.train.LoadedRun` (model in eval mode, standardizer, checkpoint)."""
        if self._loaded is None:
            from flowstudy.train import load_run as load_checkpointed, resolve_device

            self._loaded = load_checkpointed(self.path, self.checkpoint, device=resolve_device(self.device_name))
        return self._loaded

    @property
    def config(self) -> dict[str, Any]:
        """The resolved training configuration (``config.json``; the checkpoint's once loaded)."""
        if self._loaded is not None:
            return self._loaded.config
        path = self.path / "config.json"
        if not path.exists():
            from flowstudy.errors import CheckpointError

            raise CheckpointError(f"{self.path}: no config.json (not a run directory?)")
        return json.loads(path.read_text())

    @property
    def standardizer(self):
        """The training split's :class:`~flowstudy.data.Standardizer` (original <-> standardised)."""
        return self.loaded.standardizer

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return self.loaded.standardizer.dim

    def draw(self, n: int, *, seed: int = 0, solver: str = SAMPLE_SOLVER, steps: int = SAMPLE_STEPS, batch_size: int = 4096) -> Samples:
        """n samples: noise N(0, I) at t = 0 integrated to t = 1 with ``solver`` in ``steps`` steps.

        Deterministic given ``seed`` (and device). x: float32 [n, D], original space.
        """
        from flowstudy.sampling import sample_standardized

        if n < 1:
            raise ConfigError(f"n must be >= 1; got {n}")
        z, nfe = sample_standardized(self.loaded, n, solver=solver, steps=steps, seed=seed, batch_size=batch_size)
        x = self.standardizer.inverse(z.double()).float().numpy()
        return Samples(x, z, nfe, solver, steps, seed)

    def sample(self, n: int, *, seed: int = 0, solver: str = SAMPLE_SOLVER, steps: int = SAMPLE_STEPS) -> np.ndarray:
        """n samples as a float32 numpy array [n, D] in the ORIGINAL embedding space (see :meth:`draw`)."""
        return self.draw(n, seed=seed, solver=solver, steps=steps).x

    def reconstruct(self, data: DataLike, *, solver: str = "rk4", steps: int = 50) -> ReconstructionReport:
        """Invert rows [N, D] (original space) to noise (t: 1 -> 0), integrate back, report the errors."""
        from flowstudy.sampling import reconstruct as round_trip

        rows = load_dataset(data)
        check_same_dim({f"{self.path} (model)": self.dim, rows.source: rows.dim})
        return ReconstructionReport(rows.source, **round_trip(self.loaded, rows.embeddings, solver=solver, steps=steps))

    def nearest_texts(self, samples: Samples | DataLike) -> list[NearestText]:
        """For each sample, the nearest row of the run's training data (standardised space) and its text."""
        from flowstudy.sampling import nearest_rows

        train_set = _load_spec(self.config["data"])
        if train_set.texts is None:
            raise DataError(f"{train_set.source} has no texts: nearest texts need a training set with texts")
        z = samples.z if isinstance(samples, Samples) else self.standardizer.transform(torch.from_numpy(load_dataset(samples).embeddings).double())
        reference = self.standardizer.transform(torch.from_numpy(train_set.embeddings).double())
        idx, dist = nearest_rows(z, reference)
        return [NearestText(i, int(j), float(d), train_set.texts[int(j)]) for i, (j, d) in enumerate(zip(idx, dist))]

    # Held-out likelihood goes here: ``log_prob(x) -> nats per dimension`` wrapping the
    # likelihood module (instantaneous change of variables along the reverse ODE).

    def __repr__(self) -> str:
        try:
            cfg = self.config
        except Exception:  # a repr must not raise
            return f"Run({str(self.path)!r})"
        trained = f", best val loss {self.result.best_val_loss:.4f}" if self.result is not None else ""
        return f"Run({str(self.path)!r}, arch={cfg['arch']!r}, flow={cfg['flow']!r}{trained})"


# ----------------------------------------------------------------------------- evaluation
class Evaluation:
    """A model's metrics beside its baselines (Gaussian fit, noise, training copies, held-out data).

    Wraps :class:`flowstudy.evaluation.EvaluationResult`; its fields (``table``, ``source``,
    ``train``, ``reference``, ``original_norm_ratio``, ``nfe`` ...) read through. Metrics are
    computed in the training split's standardised space; see docs/evaluation.md for how to read
    them. ``print(evaluation)`` shows the table and its flags.
    """

    def __init__(self, result: Any):
        self.result = result

    def __getattr__(self, name: str) -> Any:
        if name == "result":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.result, name)

    @property
    def flags(self) -> list[str]:
        """Warnings about the model row (e.g. not beating the Gaussian fit)."""
        return list(self.result.table.flags)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (``flowstudy evaluate --json``)."""
        return self.result.to_dict()

    def to_frame(self):
        """A pandas DataFrame: one row per sampler (model first, then the baselines), one column per metric."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("Evaluation.to_frame needs pandas: pip install pandas (or use .to_dict())") from err
        return pd.DataFrame(self.result.table.to_rows()).set_index("row")

    def _repr_html_(self) -> str:
        # the same table in a notebook: one row per sampler, the flags and the norm ratio below
        import html

        r, rows = self.result, self.result.table.to_rows()
        metrics = [m for m in rows[0] if m != "row" and not m.endswith("_std")]
        head = "".join(f"<th>{m}</th>" for m in ["row", *metrics])
        body = "".join(
            "<tr>" + f"<th>{row['row']}</th>" + "".join(f"<td>{row[m]:.4g}</td>" if m in row else "<td>-</td>" for m in metrics) + "</tr>"
            for row in rows
        )
        notes = "".join(f"<li>FLAG: {html.escape(f)}</li>" for f in self.flags)
        notes += f"<li>mean sample norm / mean held-out norm (original space): {r.original_norm_ratio:.4f}</li>"
        title = html.escape(f"Evaluation of {r.source} vs {r.reference} (standardised with {r.train})")
        return f"<p>{title}</p><table><tr>{head}</tr>{body}</table><ul>{notes}</ul>"

    def __repr__(self) -> str:
        r = self.result
        return (
            f"Evaluation of {r.source} vs {r.reference} (standardised with {r.train})\n"
            f"{r.table.format()}\n"
            f"mean sample norm / mean held-out norm (original space): {r.original_norm_ratio:.4f}"
        )


def evaluate(
    target: Run | DataLike,
    *,
    reference: DataLike | None = None,
    train: DataLike | None = None,
    n: int = 1000,
    solver: str = SAMPLE_SOLVER,
    steps: int = SAMPLE_STEPS,
    seed: int = 0,
    device: str = "auto",
    **options: Any,
) -> Evaluation:
    """Evaluate a run (drawing ``n`` samples from its best checkpoint) or samples [N, D] in the original space.

    ``reference``: real held-out rows (default: the test split beside the run's data, else its
    validation split); ``train``: the training rows, which fix the standardised space (default:
    the run's data; required for samples). Every metric is computed beside the same metrics of the baselines, on the same
    held-out rows. ``options`` go to :func:`flowstudy.evaluation.evaluate_target`.
    """
    from flowstudy.evaluation import evaluate_target

    labels: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="flowstudy-eval-") as tmp:
        if isinstance(target, Run):
            device = device if device != "auto" else target.device_name
            spec = str(target.path)
        else:
            spec = _as_spec(target, Path(tmp), "samples")
            labels["source"] = str(target) if isinstance(target, (str, os.PathLike)) else load_dataset(target).source
        specs = {}
        for field, value in (("reference", reference), ("train", train)):
            if value is not None:
                specs[field] = _as_spec(value, Path(tmp), field)
                if not isinstance(value, (str, os.PathLike)):
                    labels[field] = load_dataset(value).source
        result = evaluate_target(spec, n=n, solver=solver, steps=steps, seed=seed, device=device, **specs, **options)
    return Evaluation(dataclasses.replace(result, **labels))


# ----------------------------------------------------------------------------- studies
@dataclass(frozen=True)
class Study:
    """A study folder and its finished cells (one dict per cell: axes, seed, metrics, baselines)."""

    path: Path
    name: str
    results: list[dict[str, Any]]
    n_cells: int

    def to_frame(self):
        """A pandas DataFrame with one row per finished cell (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("Study.to_frame needs pandas: pip install pandas (or use .results)") from err
        return pd.json_normalize(self.results)

    def report(self, reference: str | None = None):
        """Write report.md, report.html and figures into the study folder (see :func:`report`)."""
        return report(self.path, reference=reference)

    def __repr__(self) -> str:
        return f"Study({self.name!r}: {len(self.results)}/{self.n_cells} cells done in {str(self.path)!r})"


def run_study(
    spec: str | os.PathLike | dict[str, Any],
    *,
    out: str | os.PathLike | None = None,
    executor: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Study:
    """Run (or continue) a study: every cell not yet done is trained, sampled and evaluated.

    ``spec``: a study file (TOML) or a dict with its tables (``study``, ``base``, ``axes``,
    optional ``extra``). ``out`` defaults to ``studies/runs/<name>``. Local workers are separate
    processes: a script that calls this must guard its entry point with
    ``if __name__ == "__main__":``.
    """
    from flowstudy.study import parse_spec
    from flowstudy.study import run_study as run_cells
    from flowstudy.study.runner import DEFAULT_ROOT

    parsed = parse_spec(spec, "spec dict") if isinstance(spec, dict) else None
    if parsed is None:
        from flowstudy.study import load_spec

        parsed = load_spec(spec)
    study_dir = Path(out) if out is not None else DEFAULT_ROOT / parsed.name
    results = run_cells(parsed, study_dir, executor=executor, workers=workers, progress=progress)
    return Study(study_dir, parsed.name, results, len(parsed.cells))


def report(study_dir: str | os.PathLike | Study, *, reference: str | None = None):
    """Write ``report.md``, a self-contained ``report.html`` and ``figures/*.png`` for a study.

    ``reference``: the configuration the others are tested against (e.g. ``"mlp"``; default the
    study's). Returns :class:`~flowstudy.study.ReportPaths`.
    """
    from flowstudy.study import write_report

    return write_report(study_dir.path if isinstance(study_dir, Study) else study_dir, reference=reference)
