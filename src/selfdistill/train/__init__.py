"""The on-policy training loop for OPSD, Purified OPSD, SDPO, GRPO and SRPO (docs/training.md).

    config.py      dataclass configs, YAML recipes, key=value overrides, validation
    setup.py       data, model (+LoRA), renderer, teacher handles
    rollouts.py    sampling, rewards, siblings, group advantages
    step.py        per-method composition: contexts, targets, losses
    loop.py        Trainer: rollout, score, target, loss, step, log; checkpoints and resume
    checkpoint.py  atomic verified checkpoints; metrics.py  JSONL + TensorBoard/wandb/trackio
    batches.py     the resumable prompt stream; optim.py  AdamW + warm-up/cosine
"""

from selfdistill.train.config import ConfigError, TrainConfig, load_config, recipe_names


def train(cfg, **kwargs):
    """Run a training job (see :func:`selfdistill.train.loop.train`); returns output_dir."""
    from selfdistill.train.loop import train as _train

    return _train(cfg, **kwargs)


__all__ = ["ConfigError", "TrainConfig", "load_config", "recipe_names", "train"]
