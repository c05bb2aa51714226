"""The Python API, the one way in: data, training, sampling, evaluation, studies and optimisation.

    import flowstudy as fs
    train = fs.load_dataset("builtin:sonar-gsm8k-1k")
    run = fs.fit(train, arch="mlp", out="runs/mlp")           # or fs.load_run("runs/mlp")
    x = run.sample(1000, seed=0)                                # numpy float32 [1000, D], original space
    print(fs.evaluate(x, reference="builtin:sonar-gsm8k-1k:val", train=train))

``fit`` and ``run_study`` are named apart from the subpackages :mod:`flowstudy.train` and
:mod:`flowstudy.study`, which an attribute of the same name would shadow. The ``flowstudy``
command calls these functions and nothing else of the library. Wherever data is asked for, a
dataset spec string (see :mod:`flowstudy.data.loading`), a path, an in-memory numpy array or
torch tensor [N, D] and an :class:`~flowstudy.data.EmbeddingSet` are accepted. Everything handed
back — samples, reconstructions, optimised embeddings — is in the ORIGINAL embedding space;
networks work in the standardised space of their training split.

One module per concept: ``data`` (load_dataset, inspect, info), ``training`` (fit, load_run,
sample, reconstruct, the training options), ``evaluation`` (evaluate), ``studies`` (run_study,
report) and ``optimization`` (optimize, ask/tell, optimization_report).
"""

from __future__ import annotations

from flowstudy.exports import API_NAMES
from flowstudy.api.data import DataLike, EmbeddingSet, inspect_dataset, load_dataset, split, system_info
from flowstudy.api.evaluation import Evaluation, NLLOptions, evaluate
from flowstudy.api.optimization import AskTell, Candidates, OptimizationResult, ask_tell, optimization_report, optimize
from flowstudy.api.studies import Comparison, Study, report, run_study, study_status
from flowstudy.api.training import (
    NearestText,
    ReconstructionReport,
    Run,
    Samples,
    TrainOption,
    fit,
    load_run,
    reconstruct,
    sample,
    train_options,
)

# The package top re-exports these names lazily; the list lives in flowstudy.exports, once.
__all__ = list(API_NAMES)
