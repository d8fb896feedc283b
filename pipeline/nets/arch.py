"""A network in one line, from the architecture record the train stage writes to ``run.json``
(``{"_target_": class, **constructor arguments}``): for the log and the report. No torch, so
the report stage does not import it."""

from __future__ import annotations

from typing import Any

# The constructor arguments the train stage passes from the data, when a network names them
# (``model.shape_arguments``): a config may not set them, and a user network's line leaves them out.
SHAPE_ARGUMENTS = ("input_shape", "in_features", "in_channels", "n_classes", "num_classes")


def summary_line(arch: dict[str, Any]) -> str:
    """E.g. "MLP 64 → 128 → 10 (relu, dropout 0.2)", "CNN 1×8×8 → conv 16, 32 (3×3, max pool 2)
    → 64 → 10 (relu, dropout 0.25)", "TinyNet (mynets.TinyNet, width=32)"."""
    target = str(arch.get("_target_", "pipeline.nets.model.MLP"))
    hidden = [str(h) for h in arch.get("hidden_sizes", [])]
    if target == "pipeline.nets.model.MLP":
        return (
            f"MLP {' → '.join([str(arch['in_features']), *hidden, str(arch['n_classes'])])} "
            f"({arch['activation']}, dropout {arch['dropout']})"
        )
    if target == "pipeline.nets.model.CNN":
        shape = "×".join(str(d) for d in arch["input_shape"])
        k = arch["kernel_size"]
        pool = "no pooling" if arch["pool"] == "none" else f"{arch['pool']} pool {arch['pool_size']}"
        convs = ", ".join(str(c) for c in arch["channels"])
        head = " → ".join([*hidden, str(arch["n_classes"])])
        return (
            f"CNN {shape} → conv {convs} ({k}×{k}, {pool}) → {head} "
            f"({arch['activation']}, dropout {arch['dropout']})"
        )
    own = ", ".join(
        f"{key}={value}" for key, value in arch.items() if key != "_target_" and key not in SHAPE_ARGUMENTS
    )
    return f"{target.rsplit('.', 1)[-1]} ({target}{', ' + own if own else ''})"
