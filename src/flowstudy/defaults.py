"""Defaults shared by the CLI, the Python API, evaluation and studies (no heavy imports here).

Sampling: the explicit midpoint rule with 25 steps, 50 network evaluations. Euler with the same
50 evaluations keeps only 92.6 % of the variance of the data's exact Gaussian-fit flow (the
flow's scale along a direction of variance λ, √((1 − t)² + λt²), is convex and Euler follows its
tangent), which left trained models' samples 1.5–2 points short in norm; midpoint-25 keeps 100 %
(``python benchmarks/recipe_solver_bias.py``; docs/results/recipes/NOTES.md).
"""

SAMPLE_SOLVER = "midpoint"
SAMPLE_STEPS = 25

__all__ = ["SAMPLE_SOLVER", "SAMPLE_STEPS"]
