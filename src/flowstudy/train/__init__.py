"""Training: configuration, schedules, EMA, checkpoints, trackers and the trainer."""

from flowstudy.checkpoint import load_checkpoint, save_checkpoint
from flowstudy.train.config import RECIPES, TrainConfig, read_config_file, recipe_for, resolve_config
from flowstudy.train.ema import EMA
from flowstudy.rundir import RunPaths
from flowstudy.train.schedule import ema_decay_at, lr_factor
from flowstudy.train.stopping import TrainingInterrupted
from flowstudy.devices import resolve_device
from flowstudy.train.trainer import Trainer, TrainResult
from flowstudy.train.stacked import StackedGroup, train_group

__all__ = [
    "EMA",
    "RECIPES",
    "RunPaths",
    "StackedGroup",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "ema_decay_at",
    "load_checkpoint",
    "lr_factor",
    "read_config_file",
    "recipe_for",
    "resolve_config",
    "resolve_device",
    "save_checkpoint",
    "train_group",
]
