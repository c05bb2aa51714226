"""Training configuration: one dataclass, per-architecture recipes, TOML/YAML files, overrides.

Precedence (lowest to highest): dataclass defaults < the architecture's recipe < config file <
command-line flags. The resolved configuration is saved in every run directory.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowstudy.errors import ConfigError

BASE_FIELDS = ("none", "gaussian")  # see flowstudy.flows.gaussian_base
BASE_FITS = ("augmented", "train")
PRECISIONS = ("fp32", "tf32", "bf16")  # see TrainConfig.precision
RECIPE_MODES = ("auto", "sonar", "none")  # see TrainConfig.recipe
SONAR_DATA = "builtin:sonar-gsm8k-1k"

DICT_FIELDS = ("model", "flow_options")
"""TrainConfig fields whose recipe values merge key by key with the user's (resolve_config)."""

SUBSPACE_ONLY = ("residual_rank", "base_fit", "model")
"""A recipe's values that belong to its subspace residual (the model options: the DiT's and Mamba's
tokens of 8 of the 64 coordinates). They are dropped when the user turns the residual off:
``residual_rank = 0``, or ``base_field = "none"`` without a residual_rank (resolve_config)."""

EXECUTION_FIELDS = ("graph",)
"""TrainConfig fields that choose how steps execute, not what is trained (study ids leave them out)."""


RECIPE_SEARCHED = ("base_field", "base_fit", "residual_rank", "aug")
"""TrainConfig fields that ``recipe = "auto"`` chooses (a user's value removes that field from the search)."""


@dataclass
class TrainConfig:
    """Everything a training run needs. Fractions are of the run's total optimiser steps."""

    data: str = SONAR_DATA
    """Training data spec: builtin:NAME[:SPLIT], zoo:NAME[:SPLIT], PATH, PATH:KEY or DIR:SPLIT."""
    val: str | None = None
    """Held-out data spec (default: the split beside the data, else a seeded 10 % of it)."""
    test_fraction: float = 0.1
    """Rows of data given as one file (no val named, no val or test split beside it) held out for
    evaluation, seeded by test_seed; never trained or validated on (flowstudy.split gives them)."""
    test_seed: int = 0
    """Seed of the test rows held out of one file (not seed: runs of several seeds share them)."""
    recipe: str | None = None
    """auto (a short search over base field, residual rank and noise on this data: flowstudy.train.recipe),
    sonar (the architecture's recipe tuned on builtin:sonar-gsm8k-1k) or none; unset: sonar on the
    builtin SONAR data, auto on any other."""
    recipe_fixed: list[str] = field(default_factory=list)
    """Set by resolve_config: the searched settings the user gave, which recipe auto keeps."""
    arch: str = "mlp"
    """Architecture name (see `flowstudy info`)."""
    model: dict[str, Any] = field(default_factory=dict)
    """Model overrides passed to create_model."""
    flow: str = "icfm"
    """Flow method: icfm, otcfm, otcfm-sinkhorn, si-linear, si-trig, reflow."""
    flow_options: dict[str, Any] = field(default_factory=dict)
    """Flow overrides passed to create_flow."""
    steps: int | None = None
    """Optimiser steps (default: the architecture's recipe); exclusive with epochs."""
    epochs: float | None = None
    """Passes over the training set (instead of steps)."""
    batch_size: int = 256
    """Rows per optimiser step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    warmup_frac: float = 0.05
    """Linear learning-rate warm-up, as a fraction of the run's steps."""
    min_lr_frac: float = 0.05
    """The cosine schedule decays to lr * min_lr_frac."""
    ema_decay: float = 0.999
    """Target EMA decay; warmed up as min(decay, (1 + n) / (10 + n))."""
    grad_clip: float = 1.0
    """Gradient norm clipping threshold."""
    val_every: int = 250
    """Optimiser steps between validations (and last.pt writes)."""
    val_repeats: int = 4
    """Noise/time draws per validation row (the validation loss is noisy otherwise)."""
    patience: int | None = None
    """Early stopping after this many validations without improvement (unset: off)."""
    aug: list[str] = field(default_factory=list)
    """Augmentation NAME:STRENGTH (mixup, noise, dropout), e.g. noise:0.05; repeatable."""
    base_field: str = "none"
    """none, or gaussian: the network learns the residual of the data's Gaussian-fit velocity
    (flowstudy.flows.gaussian_base)."""
    base_fit: str = "augmented"
    """Rows the base field is fitted to: train (the Gaussian fit that held-out NLL is compared
    with) or augmented (4 augmented draws of each row)."""
    residual_rank: int | None = None
    """With base_field gaussian: the network acts only in the top-k principal subspace of the base
    field (flowstudy.flows.subspace), outside it the flow is the exact Gaussian flow; 0 or unset:
    in the whole space."""
    residual_input: str = "subspace"
    """What that network reads: subspace (its k coordinates) or full (x)."""
    residual_scale: float = 1.0
    """alpha in v = base + alpha * residual; 0 is the Gaussian fit."""
    residual_scales: list[float] = field(default_factory=list)
    """After training, choose alpha from these by the validation rows' NLL (flowstudy.train.selection); repeatable."""
    select_by: str = "loss"
    """What picks best.pt and drives early stopping: validation loss or nll."""
    std_floor: float = 0.1
    """Standardiser floor, relative to the median per-dimension std."""
    seed: int = 0
    """Seed of every random draw of the run."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:1 ..."""
    precision: str = "fp32"
    """fp32, tf32 (float32 tensors, CUDA matrix products on TF32 tensor cores) or bf16 (autocast
    inside networks on CUDA); the CPU computes in fp32. fp32 is the default: a single run's network
    is small enough to be launch-bound, and autocast's casts made H100 training 20-40 % slower
    (benchmarks/RESULTS.md)."""
    graph: bool = True
    """On CUDA, replay each training step as one CUDA graph (flowstudy.train.graph); off keeps the
    eager step (debugging). The CPU always runs eagerly."""
    compile: str | None = None
    """torch.compile the step's velocity field first: default or max-autotune-no-cudagraphs (one
    compile per run, tens of seconds; static shapes); unset: off."""
    tracker: str | None = None
    """tensorboard or mlflow (local store in the run directory)."""
    subset: int | None = None
    """Train on a nested subset of this many rows (data-size studies)."""
    subset_seed: int = 0
    """Seed of the nested subsets."""
    teacher: str | None = None
    """Reflow: the run directory whose ODE map provides the (noise, endpoint) pairs."""
    reflow_pairs: int = 4000
    """Reflow: pairs drawn from the teacher."""
    reflow_solver: str = "rk4"
    """Reflow: the solver that draws them."""
    reflow_steps: int = 25
    """Reflow: that solver's steps."""

    def total_steps(self, n_train: int) -> int:
        """Optimiser steps of the run: ``steps``, or ``epochs`` passes over n_train rows."""
        if self.steps is not None:
            return int(self.steps)
        per_epoch = max(1, -(-n_train // self.batch_size))  # ceil
        return max(1, int(round(float(self.epochs) * per_epoch)))

    def validate(self) -> TrainConfig:
        """Check every value; raises ConfigError naming the first bad one, else returns self."""
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("give either steps or epochs, not both")
        if self.steps is None and self.epochs is None:
            raise ConfigError("the run length is unset: give steps or epochs")
        from flowstudy.flows.subspace import RESIDUAL_INPUTS, check_rank
        from flowstudy.graph_solver import COMPILE_MODES
        from flowstudy.train.selection import SELECT_BY

        checks = [
            (self.steps is None or self.steps >= 1, f"steps must be >= 1; got {self.steps}"),
            (self.epochs is None or self.epochs > 0, f"epochs must be > 0; got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1; got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0; got {self.lr}"),
            (0 <= self.warmup_frac < 1, f"warmup_frac must be in [0, 1); got {self.warmup_frac}"),
            (0 <= self.min_lr_frac <= 1, f"min_lr_frac must be in [0, 1]; got {self.min_lr_frac}"),
            (0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1); got {self.ema_decay}"),
            (self.val_every >= 1, f"val_every must be >= 1; got {self.val_every}"),
            (self.patience is None or self.patience >= 1, f"patience must be >= 1; got {self.patience}"),
            (self.flow != "reflow" or self.teacher is not None, "flow 'reflow' needs a teacher run (--teacher RUN_DIR)"),
            (self.base_field in BASE_FIELDS, f"base_field must be one of {', '.join(BASE_FIELDS)}; got {self.base_field!r}"),
            (self.base_fit in BASE_FITS, f"base_fit must be one of {', '.join(BASE_FITS)}; got {self.base_fit!r}"),
            (self.residual_rank is None or self.base_field == "gaussian",
             f"residual_rank {self.residual_rank} needs base_field = 'gaussian'; got {self.base_field!r}"),
            (self.residual_input in RESIDUAL_INPUTS,
             f"residual_input must be one of {', '.join(RESIDUAL_INPUTS)}; got {self.residual_input!r}"),
            (self.residual_scale >= 0, f"residual_scale must be >= 0; got {self.residual_scale}"),
            (not self.residual_scales or self.residual_rank is not None,
             "residual_scales needs a subspace residual (residual_rank; residual_rank = D acts everywhere)"),
            (all(a >= 0 for a in self.residual_scales), f"residual_scales must be >= 0; got {self.residual_scales}"),
            (self.select_by in SELECT_BY, f"select_by must be one of {', '.join(SELECT_BY)}; got {self.select_by!r}"),
            (self.compile is None or self.compile in COMPILE_MODES,
             f"compile must be one of {', '.join(COMPILE_MODES)} (or unset); got {self.compile!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"),
            (self.tracker in (None, "tensorboard", "mlflow"), f"tracker must be tensorboard or mlflow; got {self.tracker}"),
            (self.recipe is None or self.recipe in RECIPE_MODES, f"recipe must be one of {', '.join(RECIPE_MODES)}; got {self.recipe!r}"),
            (0 <= self.test_fraction < 1, f"test_fraction must be in [0, 1); got {self.test_fraction}"),
        ]
        if self.residual_rank is not None:
            check_rank(self.residual_rank)
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def residual(self) -> dict[str, Any] | None:
        """The subspace residual's settings as :meth:`flowstudy.flows.subspace.SubspaceNet.around` takes
        them (None: the network acts in the whole space)."""
        if self.residual_rank is None:
            return None
        return {"rank": self.residual_rank, "reads": self.residual_input, "scale": self.residual_scale}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (what config.json holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict; unknown keys raise ConfigError naming ``source`` and the valid keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        values = dict(values)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        if isinstance(values.get("residual_scales"), (int, float)):
            values["residual_scales"] = [values["residual_scales"]]
        if isinstance(values.get("aug"), str):
            values["aug"] = [values["aug"]]
        return cls(**values)


def field_docs() -> dict[str, str]:
    """Each TrainConfig field's documentation (the string under it), whitespace folded: what the
    Python API lists and the command line's ``train --help`` shows."""
    import ast
    import inspect

    body = ast.parse(inspect.getsource(TrainConfig)).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


# Per-architecture recipes, tuned on builtin:sonar-gsm8k-1k (docs/results/tuning: one seed on an
# H100). MLP and U-Net reach their best validation loss within 1000-2000 steps, DiT keeps improving
# to 3000, Mamba is flat after 1000. Each finishes on 2 CPU cores in minutes (mamba-small ~8 min;
# benchmarks/RESULTS.md).
# Gaussian noise augmentation (0.3 x each dimension's std; 0.4 for MLP and U-Net) is part of every recipe: 800 training rows
# span only 799 of 1024 directions, and a flow fitted to them puts no variance in the others — its
# samples came out 7-15 % short in norm with density 2-5x that of real data
# (docs/results/architectures-noaug). Against the 400-row test split, rows + N(0, 0.3^2) — the
# target this defines — beat the Gaussian fit on every metric (MMD 0.0003 vs 0.0014); 0.2 made the
# MLP's samples contract more (norm 0.956), 0.5 overshot (1.031) and lost coverage (0.39).
# Samples still come out short (docs/results/recipes/NOTES.md) for two reasons:
# - the sampler: Euler-50 keeps 92.6 % of the variance of the data's exact Gaussian flow (norm
#   0.974); the midpoint rule with 25 steps (the same 50 network evaluations) keeps all of it, and
#   takes the MLP from norm 0.960 to 0.975 and MMD 0.0054 to 0.0036 (benchmarks/recipe_solver_bias.py);
# - the network: between t = 0.2 and 0.8 it pulls samples toward local averages of the training rows
#   and removes ~25 % of the variance along the top 20 principal directions, which is what MMD sees.
#   Wider networks, more steps or the Gaussian base field lower the validation loss and contract more;
#   EMA, weight decay, logit-normal time and the std floor change nothing.
# Before the subspace residual (below) the MLP trained with exact minibatch OT-CFM and noise 0.4.
# Over 2 seeds at midpoint-25 OT-CFM keeps more top-20 variance (354 vs 335 of the test rows' 411)
# and is better on every metric (norm 0.978 vs 0.973, MMD 0.0031 vs 0.0036, coverage 0.83 vs 0.81); noise 0.4 on top brings the norm to 1.004
# and MMD to 0.0024, trading nearest-neighbour quality for it (fidelity 1.103, coverage 0.66; the
# Gaussian fit: 1.154, 0.40). The U-Net (I-CFM; OT-CFM measured no gain) with noise 0.4: norm 0.981
# vs 0.966, MMD 0.0028 vs 0.0049, fidelity 1.025 vs 1.029 (2 seeds). DiT at 0.4 is not measured yet.
# All still short of the Gaussian fit's MMD (0.0014).
# Mamba networks learn the data's linear (covariance) structure slowly: after their 1000 steps their
# samples held a quarter of the real variance along the top 20 principal directions and spread the
# rest evenly, so their earlier recipe added the Gaussian base field (flowstudy.flows.gaussian_base)
# and learned only the residual (mamba-tiny, 800 steps on CPU: top-20 variance 100 -> 397 of the held-out 419, density
# 0.46 -> 0.80, coverage 0.54 -> 0.82). In the whole space the MLP's and U-Net's samples contract
# with it (MLP norm 0.975 -> 0.944 at midpoint-25; with OT-CFM 0.923: the base field is the optimum of independent pairs,
# not of OT pairs); trained only 500 steps it stays near the Gaussian fit (norm 0.985, MMD 0.0022,
# fidelity 1.14 vs 1.15, 2 seeds). Measurements and commands: docs/results/architectures-cpu/NOTES.md,
# docs/results/recipes/NOTES.md.
# Held-out NLL (docs/results/recipes/NOTES.md, "Beating the Gaussian fit by held-out NLL"): no
# recipe above beat the Ledoit-Wolf Gaussian fit (MLP +0.078, U-Net +0.128 nats/dim). Two causes:
# the base field was fitted to augmented rows (noise 0.3 makes that Gaussian alone 0.051 nats/dim
# worse than the fit to the rows), and a network acting in all 1024 directions spends likelihood
# where 800 rows teach nothing. The MLP and U-Net now learn only a residual in the top principal
# subspace of a base field fitted to the training rows (flowstudy.flows.subspace): outside it the
# flow is the exact Gaussian fit. Rank 128 beats the Gaussian by more than rank 64 or 32 (MLP
# -0.034 / -0.025 / -0.015 at noise 0.4) but contracts the samples more (norm 0.963); stronger
# noise restores the norm at little cost in NLL (MLP rank 128, noise 0.8: -0.030, norm 0.995).
# OT-CFM brought no NLL and cost norm with the subspace residual (0.969 vs 0.984), so the MLP uses I-CFM.
# The DiT with a rank-64 subspace residual and noise 0.4: -0.0093 nats/dim, norm 0.997 (3 seeds, CPU).
_SUBSPACE = {"base_field": "gaussian", "base_fit": "train"}
RECIPES: dict[str, dict[str, Any]] = {
    "mlp": {"steps": 2000, "lr": 1e-3, "batch_size": 256, "aug": ["noise:0.8"], "residual_rank": 128, **_SUBSPACE},
    "unet": {"steps": 2000, "lr": 1e-3, "batch_size": 256, "aug": ["noise:0.4"], "residual_rank": 64, **_SUBSPACE},
    # the DiT reads the 64 subspace coordinates as 8 tokens of 8 (its default chunk of 128 does not divide 64)
    "dit": {"steps": 3000, "lr": 5e-4, "batch_size": 256, "aug": ["noise:0.4"], "residual_rank": 64, **_SUBSPACE, "model": {"chunk_size": 8}},
    # Mamba: the DiT's setting (rank 64, tokens of 8) with noise 1.2. On an H100 over 3 seeds
    # (docs/results/mamba-subspace/NOTES.md) noise 0.4 / 0.5 / 0.8 gave NLL -0.0151 / -0.0155 / -0.0193
    # nats/dim against the Gaussian fit and norm 0.970 / 0.970 / 0.975: more noise helped both, the
    # norm slowly, and 0.8 left it 2.5 % short. 1.2 carries that trend toward the 2 % aim (not yet
    # measured: studies/architectures.toml shows it). The DiT at the same budget -0.0092, the MLP on
    # the same subspace -0.0248. In the whole space no Mamba beat the Gaussian fit by NLL (+0.129 at
    # best; docs/results/mamba/NOTES.md).
    "mamba": {"steps": 3000, "lr": 5e-4, "batch_size": 256, "aug": ["noise:1.2"], "residual_rank": 64, **_SUBSPACE, "model": {"chunk_size": 8}},
}


def recipe_for(arch: str) -> dict[str, Any]:
    """The recipe of an architecture's family (``dit-base`` -> ``dit``; ``mamba-tied`` -> ``mamba``)."""
    family = arch.split("-")[0]
    return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in RECIPES.get(family, {"steps": 2000}).items()}


def default_recipe(data_spec: str) -> str:
    """The recipe mode a run gets unless it names one: "sonar" on the builtin SONAR data (any
    split), "auto" on any other data (:data:`TrainConfig.recipe`)."""
    return "sonar" if data_spec.split(":")[:2] == SONAR_DATA.split(":") else "auto"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Values from a TOML or YAML file (a ``[train]`` table is used if present)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            values = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        elif path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            raise ConfigError(f"{path}: config files must be .toml, .yaml/.yml or .json")
    except ConfigError:
        raise
    except Exception as err:  # parser errors carry line numbers; keep them
        raise ConfigError(f"{path}: cannot parse: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a table of options at the top level")
    return values.get("train", values)


def resolve_config(file_values: dict[str, Any] | None, overrides: dict[str, Any], source: str = "config") -> TrainConfig:
    """defaults < recipe(arch) < file < overrides (None values in overrides are 'not given').

    The dict fields (``model``, ``flow_options``) merge key by key with the recipe's: a recipe's
    model option stays unless the file or the command line names that key. ``residual_rank = 0``
    (or ``base_field = "none"`` without a rank) trains in the whole space: the recipe's
    :data:`SUBSPACE_ONLY` values are dropped."""
    merged: dict[str, Any] = dict(file_values or {})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    arch = merged.get("arch", TrainConfig.arch)
    mode = merged.get("recipe") or default_recipe(merged.get("data", TrainConfig.data))
    merged["recipe"] = mode
    values = recipe_for(arch) if mode != "none" else {"steps": recipe_for(arch)["steps"]}
    if mode == "auto":
        values = {k: v for k, v in values.items() if k not in RECIPE_SEARCHED}
        merged["recipe_fixed"] = [k for k in RECIPE_SEARCHED if k in merged]
        if merged.get("residual_rank") and "base_field" not in merged:  # a rank means the subspace residual
            values.update(base_field="gaussian", base_fit="train")
    whole_space = merged.get("residual_rank") == 0 or (merged.get("base_field") == "none" and "residual_rank" not in merged)
    if whole_space:
        merged.pop("residual_rank", None)
        if values.get("residual_rank") is not None:
            for key in SUBSPACE_ONLY:
                values.pop(key, None)
    if "epochs" in merged:
        values.pop("steps", None)
    for key in DICT_FIELDS:
        if isinstance(values.get(key), dict) and isinstance(merged.get(key), dict):
            merged[key] = {**values[key], **merged[key]}
    values.update(merged)
    return TrainConfig.from_dict(values, source).validate()
