"""The training progress bar: steps done, loss, steps/s and the time left."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def progress_bar(enabled: bool, total: int, start: int):
    """Yields ``update(step, loss, steps_per_s, val_loss)``; a rich progress bar with ETA when enabled.
    The training loss is that of the augmented rows the steps see; the validation loss that of
    the plain held-out rows (the two differ by the augmentation's share when it is strong)."""
    if not enabled:
        yield lambda *_: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]:.4f}  {task.fields[rate]:.1f} steps/s"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("train", total=total, completed=start, loss=float("nan"), val=float("nan"), rate=0.0)
        yield lambda step, loss, rate, val: progress.update(task, completed=step, loss=loss, rate=rate, val=val)


__all__ = ["progress_bar"]
