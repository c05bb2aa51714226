"""Metric sinks: metrics.jsonl always; TensorBoard or MLflow (local stores) when asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from flowstudy.io import atomic_write_text


class Tracker(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...
    def close(self) -> None: ...


class JsonlTracker:
    """Appends one JSON object per call to ``metrics.jsonl`` (flushed, so a crash keeps it)."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        # a fresh run starts a fresh file (a folder reused after its checkpoints were removed)
        self._handle = self.path.open("a" if resume_step is not None else "w", encoding="utf-8")

    def _truncate_after(self, step: int) -> None:
        """Drop records logged after the checkpoint we resume from: they will be logged again."""
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._handle.write(json.dumps({"step": step, **metrics}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class TensorBoardTracker:
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError("TensorBoard tracking needs: pip install 'flowstudy[tracking]'") from err
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    """Logs to a local file store under the run directory (``mlruns/``)."""

    def __init__(self, store: Path, run_name: str, params: dict[str, Any]):
        try:
            import mlflow
        except ImportError as err:
            raise ImportError("MLflow tracking needs: pip install 'flowstudy[tracking]'") from err
        self.mlflow = mlflow
        mlflow.set_tracking_uri(Path(store).resolve().as_uri())
        mlflow.set_experiment("flowstudy")
        self.run = mlflow.start_run(run_name=run_name)
        mlflow.log_params({k: str(v)[:250] for k, v in params.items()})

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def make_trackers(kind: str | None, run_dir: Path, params: dict[str, Any], resume_step: int | None) -> list[Tracker]:
    trackers: list[Tracker] = [JsonlTracker(run_dir / "metrics.jsonl", resume_step)]
    if kind == "tensorboard":
        trackers.append(TensorBoardTracker(run_dir / "tensorboard"))
    elif kind == "mlflow":
        trackers.append(MLflowTracker(run_dir / "mlruns", run_dir.name, params))
    return trackers
