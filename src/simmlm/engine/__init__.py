"""Training engine (Lightning): two-stage training, configs, checkpoints."""

from simmlm.engine.checkpoint import load_checkpoint, save_checkpoint
from simmlm.engine.config import RunConfig, load_config
from simmlm.engine.train import RunResult, load_splits, train

__all__ = ["RunConfig", "RunResult", "load_checkpoint", "load_config", "load_splits", "save_checkpoint", "train"]
