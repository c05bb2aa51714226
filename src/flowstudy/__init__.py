"""flowstudy: flow matching in embedding spaces.

    import flowstudy as fs
    train = fs.load_dataset("builtin:sonar-gsm8k-1k")
    run = fs.fit(train, arch="mlp", out="runs/mlp")     # or fs.load_run("runs/mlp")
    x = run.sample(1000, seed=0)                          # numpy float32 [1000, D], original space
    print(fs.evaluate(x, reference="builtin:sonar-gsm8k-1k:val", train=train))

The names below are imported on first use (:mod:`flowstudy.api`), so ``import flowstudy`` does
not import torch. ``fs.fit`` and ``fs.run_study`` are not called ``train`` and ``study``: those are
the subpackages :mod:`flowstudy.train` and :mod:`flowstudy.study`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstudy.exports import API_NAMES
from flowstudy.version import __version__

__all__ = ["__version__", *API_NAMES]

if TYPE_CHECKING:
    from flowstudy.api import (
        AskTell,
        Candidates,
        Comparison,
        DataLike,
        EmbeddingSet,
        Evaluation,
        NLLOptions,
        NearestText,
        OptimizationResult,
        ReconstructionReport,
        Run,
        Samples,
        Study,
        TrainOption,
        ask_tell,
        evaluate,
        fit,
        inspect_dataset,
        load_dataset,
        load_run,
        optimization_report,
        optimize,
        reconstruct,
        report,
        run_study,
        sample,
        system_info,
        train_options,
    )


def __getattr__(name: str) -> Any:
    if name in API_NAMES:
        from flowstudy import api

        return getattr(api, name)
    raise AttributeError(f"module 'flowstudy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API_NAMES})
