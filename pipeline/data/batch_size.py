"""The training check that prepare runs early and train runs again: a train split of at least one batch."""

from __future__ import annotations

from pipeline.errors import ConfigError


def check_batch_size(n_train: int, batch_size: int) -> None:
    """A train split smaller than one batch is almost surely a mistake (wrong file, wrong key)."""
    if n_train < batch_size:
        raise ConfigError(
            f"The train split has {n_train} rows, fewer than one batch (train.batch_size={batch_size}). "
            f"Lower train.batch_size (e.g. train.batch_size={max(1, n_train // 4)}) or use more data "
            "(data.loader.*, data.test_size, data.val_size)."
        )
