"""Which scaling trains better on MNIST-shaped images: per-pixel standardisation or /255?

    python -m benchmarks.scaling              # 3 seeds, 12,000 + 3,000 images, up to 60 epochs
    python -m benchmarks.scaling --epochs 5   # the same, at most 5 epochs
    python -m benchmarks.scaling --quick      # smoke test: 1 seed, 1 epoch

No MNIST files ship with glassnet, so the images are MNIST-shaped from scikit-learn's digits:
each 8 x 8 digit is enlarged to 20 x 20, set to 0-255 and placed in a 28 x 28 frame at a random
offset around the centre (as MNIST centres its 20 x 20 digits by their centre of mass), so the
border pixels hold ink in only a few images, as in MNIST. Train and test images come from
disjoint digits. Each side goes through glassnet's own prepare core (the scaler fitted on
train only) and the default network and optimizer (MLP 784-128-10, Adam 1e-3, batch 64), keeping the epoch of
lowest validation loss with early stopping (patience 10) as the train stage does, with the same
seeds; it prints test accuracy, test log loss, the epoch kept and the largest scaled test value.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
from typing import Any

import numpy as np

from benchmarks.common import loadavg, log, parser, setup_logging, table
from pipeline.data.dataset import Dataset, PixelScale

SIDE = 28
DIGIT = 20


def mnist_like(n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """MNIST-shaped images (0-255) drawn from the digits; the last ``n_test`` rows are the test
    split (``test_rows``), from digits never used for training."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    big = np.stack([zoom(image, DIGIT / 8, order=1) for image in digits.images])  # (1797, 20, 20)
    big = np.clip(big / 16 * 255, 0, 255)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(big))
    cut = int(len(big) * 0.75)
    images, labels = [], []
    for pool, n in ((order[:cut], n_train), (order[cut:], n_test)):
        picks = rng.choice(pool, n)
        # Offsets of the 20 x 20 digit in the 28 x 28 frame: 4 is centred; MNIST's centring by
        # mass leaves a digit's box a pixel or two off centre.
        offsets = np.clip(np.rint(rng.normal(4, 1.0, size=(n, 2))), 0, SIDE - DIGIT).astype(int)
        frame = np.zeros((n, SIDE, SIDE), dtype=np.float32)
        for i, (k, (r, c)) in enumerate(zip(picks, offsets, strict=True)):
            frame[i, r : r + DIGIT, c : c + DIGIT] = big[k]
        images.append(frame.reshape(n, -1))
        labels.append(digits.target[picks])
    X = np.concatenate(images)
    return Dataset(
        name="mnist_like",
        X=X,
        y=np.concatenate(labels).astype(np.int64),
        feature_names=[f"pixel_{r}_{c}" for r in range(SIDE) for c in range(SIDE)],
        class_names=[str(d) for d in range(10)],
        image_shape=(SIDE, SIDE),
        test_rows=np.arange(n_train, n_train + n_test),
    )


def train_and_test(ds: Dataset, scaler: Any, seed: int, epochs: int) -> dict[str, float]:
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from pipeline.data.split import prepare
    from pipeline.nets.model import MLP
    from pipeline.training.fit import best_weights, fit

    arrays, _ = prepare(ds, scaler, 0.2, 0.1, seed)
    pl.seed_everything(seed, verbose=False)
    net = MLP(arrays["X_train"].shape[1], 10, hidden_sizes=[128], activation="relu", dropout=0.2)
    with tempfile.TemporaryDirectory() as folder:
        # As the train stage selects: the epoch of lowest validation loss, early stopping after 10.
        best = ModelCheckpoint(dirpath=folder, monitor="val_loss", mode="min")
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            callbacks=[best, EarlyStopping(monitor="val_loss", mode="min", patience=10)],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        fit(net, functools.partial(torch.optim.Adam, lr=1e-3), arrays, trainer, 64, seed)
        net.load_state_dict(best_weights(best.best_model_path))
        best_epoch = int(torch.load(best.best_model_path, weights_only=True)["epoch"]) + 1
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(arrays["X_test"]))
    y = torch.from_numpy(arrays["y_test"])
    return {
        "accuracy": float((logits.argmax(1) == y).float().mean()),
        "log_loss": float(torch.nn.functional.cross_entropy(logits, y)),
        "max_test_value": float(np.abs(arrays["X_test"]).max()),
        "best_epoch": best_epoch,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=60, help="most epochs per fit (the train stage's default)")
    args = p.parse_args()
    setup_logging()
    import logging

    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from sklearn.preprocessing import StandardScaler

    seeds = [0] if args.quick else [0, 1, 2]
    epochs = 1 if args.quick else args.epochs
    ds = mnist_like(2000, 500) if args.quick else mnist_like(12000, 3000)
    n_test = 0 if ds.test_rows is None else len(ds.test_rows)
    sides = {"per-pixel StandardScaler": StandardScaler, "divide by 255 (PixelScale)": PixelScale}
    log.info(
        "MNIST-shaped digits: %d train+val / %d test images, %d epochs, seeds %s; load %s",
        len(ds.y) - n_test,
        n_test,
        epochs,
        seeds,
        loadavg(),
    )
    rows = []
    for label, make in sides.items():
        found = [train_and_test(ds, make(), seed, epochs) for seed in seeds]
        acc = [f["accuracy"] for f in found]
        loss = [f["log_loss"] for f in found]
        kept = [f["best_epoch"] for f in found]
        rows.append(
            [
                label,
                f"{statistics.median(kept):.0f} [{min(kept)}..{max(kept)}]",
                f"{statistics.median(acc):.4f} [{min(acc):.4f}..{max(acc):.4f}]",
                f"{statistics.median(loss):.4f} [{min(loss):.4f}..{max(loss):.4f}]",
                f"{found[0]['max_test_value']:.1f}",
            ]
        )
    table(
        [
            "scaler",
            "epoch kept",
            "test accuracy (median [min..max])",
            "test log loss",
            "largest |scaled test value|",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
