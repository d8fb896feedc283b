"""Scale curve and memory: training time per epoch, explain time and peak memory at 10k, 30k
and 60k MNIST-shaped samples.

    python -m benchmarks.scale                  # 10,000 / 30,000 / 60,000 rows
    python -m benchmarks.scale --quick          # smoke test: 1,000 / 2,000 rows
    python -m benchmarks.scale --plot scale.png # also draw the curve (seconds against rows)

Each size runs in a fresh process (so its peak RSS is its own): glassnet's training path
(benchmarks.train_loop's Trainer, batch 64, validation on a sixth as many rows) for 1 and for 3
epochs, and pipeline.explain.fast_deep on every training row against 100 background rows. Per size:
seconds per epoch, explain seconds, both per 1,000 rows (flat = linear growth), the dataset's
size and peak RSS after 1 and after 3 epochs: if training copied the data each epoch, the
3-epoch peak would exceed the 1-epoch one by about the dataset's size per extra epoch.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from benchmarks.common import ROOT, loadavg, log, parser, setup_logging, table


def one(n: int, epochs: int, explain: bool = True) -> dict[str, float]:
    """Runs in the child process."""
    import logging
    from functools import partial

    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from benchmarks.train_loop import glassnet_trainer, synthetic
    from pipeline.explain import fast_deep
    from pipeline.nets.model import MLP
    from pipeline.training.fit import fit

    arrays = synthetic(n, n // 6)
    data_mb = sum(a.nbytes for a in arrays.values()) / 1e6
    torch.manual_seed(0)
    net = MLP(784, 10, [128], "relu", 0.2)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = glassnet_trainer(Path(tmp), epochs)
        start = time.perf_counter()
        fit(net, partial(torch.optim.Adam, lr=1e-3), arrays, trainer, 64, seed=0)
        per_epoch = (time.perf_counter() - start) / epochs
    rss_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    if not explain:
        return {
            "epoch_s": per_epoch,
            "explain_s": math.nan,
            "data_mb": data_mb,
            "rss_train_mb": rss_train,
        }
    background = arrays["X_train"][np.random.default_rng(0).choice(n, 100, replace=False)]
    start = time.perf_counter()
    fast_deep.deep_shap(net.eval(), background, arrays["X_train"])
    explain_s = time.perf_counter() - start
    return {"epoch_s": per_epoch, "explain_s": explain_s, "data_mb": data_mb, "rss_train_mb": rss_train}


def child(n: int, epochs: int, explain: bool) -> dict[str, float]:
    code = f"import json; from benchmarks.scale import one; print(json.dumps(one({n}, {epochs}, {explain})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def plot(sizes: list[int], results: list[dict[str, float]], path: Path) -> None:
    """Seconds against rows for training and explanation, with the line through the origin and
    the largest size: points on the line mean time grows linearly with the data."""
    from matplotlib.figure import Figure

    from pipeline.plots import save_png

    fig = Figure(figsize=(9, 3.4))
    for ax, key, title in zip(
        fig.subplots(1, 2), ("epoch_s", "explain_s"), ("training, s per epoch", "explanation, s"), strict=True
    ):
        values = [r[key] for r in results]
        ax.plot(sizes, values, "o", label="measured")
        ax.plot([0, sizes[-1]], [0, values[-1]], "--", color="grey", label="linear through the largest")
        ax.set(title=title, xlabel="rows", xlim=(0, None), ylim=(0, None))
        ax.legend(loc="upper left")
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    log.info("plot: %s", path)


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--plot", type=Path, help="write the scale curve as a PNG here")
    args = cli.parse_args()
    setup_logging()
    sizes = (1_000, 2_000) if args.quick else (10_000, 30_000, 60_000)
    log.info("scale: glassnet training (batch 64) and fast DeepSHAP per size, load %s", loadavg())
    rows, results = [], []
    for n in sizes:
        short, long = child(n, 1, False), child(n, 3, True)
        results.append(long)
        rows.append(
            [
                f"{n:,}",
                f"{long['epoch_s']:.2f}",
                f"{1000 * long['epoch_s'] / n:.3f}",
                f"{long['explain_s']:.2f}",
                f"{1000 * long['explain_s'] / n:.3f}",
                f"{long['data_mb']:.0f}",
                f"{short['rss_train_mb']:.0f}",
                f"{long['rss_train_mb']:.0f}",
                loadavg(),
            ]
        )
    log.info("")
    table(
        [
            "rows",
            "train s/epoch",
            "per 1k rows",
            "explain s",
            "per 1k rows",
            "data MB",
            "peak RSS MB, 1 epoch",
            "3 epochs",
            "load",
        ],
        rows,
    )
    if args.plot:
        plot(list(sizes), results, args.plot)


if __name__ == "__main__":
    main()
