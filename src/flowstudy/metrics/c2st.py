"""Classifier two-sample test (C2ST): can a classifier tell samples from real rows?

Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017. A balanced set of
samples (label 1) and real held-out rows (label 0) is classified on standardised features
(scaler fitted inside each training fold) by one of :data:`CLASSIFIERS` ("logistic", the
default: L2-regularised logistic regression; "knn": k-nearest neighbours; "knn_cosine": 10 nearest
neighbours by cosine, the nonlinear test that evaluation reports as ``c2st_knn_auc``; "mlp": a
one-hidden-layer network),
with stratified k-fold cross-validation. The score is the mean out-of-fold ROC AUC:
0.5 means indistinguishable, 1.0 means perfectly separable. Out-of-fold AUCs below 0.5
are noise around 0.5, not a better result.

A linear classifier sees differences in means and little else. In standardised space the
noise baseline N(0, I) and the Gaussian fit match the data's means (and variances), so
both score about 0.5 here: a linear C2ST near 0.5 does not show that a model learnt the
data, only that its means are right. The "knn" classifier sees some local
structure, but at n ~ 50 per class in 1024-D it is weak too (AUC ~0.6 for noise on the
reference SONAR set, where density/coverage give 0.005/0.02): read C2ST beside MMD,
density/coverage, the Fréchet distance and the neighbour ratios.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from torch import Tensor

from flowstudy.errors import ConfigError
from flowstudy.metrics.distances import as_matrices
from flowstudy.metrics.seeding import derived_rng

DEFAULT_C = 0.1
"""Inverse L2 strength of the logistic classifier. With n ~ D (1024-D, a few hundred rows)
a weakly regularised classifier interpolates its training folds and loses power; 0.1 on
z-scored features is a moderate choice that keeps the test sensitive to mean shifts."""

KNN_NEIGHBOURS = 5


def _logistic(n_train: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # liblinear: an order of magnitude faster than lbfgs when n ~ D
    return make_pipeline(StandardScaler(), LogisticRegression(C=DEFAULT_C, solver="liblinear", max_iter=2000))


def _knn(n_train: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(KNN_NEIGHBOURS, n_train)))


COSINE_NEIGHBOURS = 10


def _knn_cosine(n_train: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    # rows scaled to unit length: Euclidean neighbours are then cosine neighbours. In the
    # z-scored space N(0, I) rows sit far from everything, so plain Euclidean kNN finds data
    # rows nearest to both classes and cannot tell noise from data (AUC 0.5 on SONAR rows)
    return make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=min(COSINE_NEIGHBOURS, n_train)))


def _mlp(n_train: int) -> Any:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # one hidden layer, strong L2 and few L-BFGS iterations: with n ~ D it would otherwise fit its
    # folds exactly. About 1 s per C2ST on 2 x 200 SONAR rows (kNN: 0.05 s)
    mlp = MLPClassifier(hidden_layer_sizes=(32,), alpha=1.0, solver="lbfgs", max_iter=50, random_state=0)
    return make_pipeline(StandardScaler(), mlp)


CLASSIFIERS: dict[str, Callable[[int], Any]] = {"logistic": _logistic, "knn": _knn, "knn_cosine": _knn_cosine, "mlp": _mlp}
"""Name -> factory ``(rows in the training fold) -> unfitted scikit-learn classifier`` (with
``decision_function`` or ``predict_proba``)."""


@dataclass(frozen=True)
class C2STResult:
    """Mean and std of the out-of-fold ROC AUC (0.5 = indistinguishable)."""

    auc: float
    auc_std: float
    fold_aucs: tuple[float, ...]
    n_per_class: int
    n_folds: int
    classifier: str


def _scores(clf: Any, x: np.ndarray) -> np.ndarray:
    """Scores for class 1 ("sample"), whichever the classifier offers."""
    if hasattr(clf, "decision_function"):
        return clf.decision_function(x)
    return clf.predict_proba(x)[:, 1]


def c2st_auc(
    samples: np.ndarray | Tensor,
    real: np.ndarray | Tensor,
    *,
    seed: int = 0,
    n_folds: int = 5,
    classifier: str | Callable[[int], Any] = "logistic",
    max_per_class: int | None = None,
) -> C2STResult:
    """Cross-validated ROC AUC of a classifier separating ``samples`` from ``real``.

    Parameters
    ----------
    samples: [Ns, D]; real: [Nr, D], in the same space.
    seed: draws the balanced subsample and the fold assignment.
    n_folds: stratified folds; lowered to the class size when that is smaller (>= 2).
    classifier: a name in :data:`CLASSIFIERS`, or a factory like theirs.
    max_per_class: cap on the rows per class (default: min(Ns, Nr)).
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    if isinstance(classifier, str):
        if classifier not in CLASSIFIERS:
            raise ConfigError(f"unknown C2ST classifier {classifier!r}; valid: {', '.join(CLASSIFIERS)}")
        name, factory = classifier, CLASSIFIERS[classifier]
    else:
        name, factory = getattr(classifier, "__name__", "custom"), classifier
    if n_folds < 2:
        raise ConfigError(f"n_folds must be >= 2; got {n_folds}")
    s, r = (m.cpu().numpy() for m in as_matrices(samples=samples, real=real))
    n = min(len(s), len(r), max_per_class or len(s))
    if n < 2:
        raise ConfigError(f"C2ST needs at least 2 rows per class; got {n}")
    rng = derived_rng(seed, "c2st")
    x = np.concatenate([s[rng.choice(len(s), n, replace=False)], r[rng.choice(len(r), n, replace=False)]])  # [2n, D]
    y = np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])  # [2n]
    k = min(n_folds, n)
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
    aucs = []
    for train_idx, test_idx in folds.split(x, y):
        clf = factory(len(train_idx)).fit(x[train_idx], y[train_idx])
        aucs.append(float(roc_auc_score(y[test_idx], _scores(clf, x[test_idx]))))
    return C2STResult(
        auc=float(np.mean(aucs)),
        auc_std=float(np.std(aucs, ddof=1)) if k > 1 else 0.0,
        fold_aucs=tuple(aucs),
        n_per_class=n,
        n_folds=k,
        classifier=name,
    )
