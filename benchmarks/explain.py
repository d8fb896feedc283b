"""Explanation: glassnet's DeepSHAP (pipeline.fast_deep) against the plain shap.DeepExplainer call.

    python -m benchmarks.explain                # 1,000 MNIST-shaped samples, 100 background rows
    python -m benchmarks.explain --quick        # smoke test: 20 samples, 10 background rows

Both sides explain the same trained-shape MLP (784-128-ReLU-Dropout-10, eval mode) on the same
synthetic data. Reference: ``shap.DeepExplainer(model, background).shap_values(x)`` called the plain
way (it loops over samples and runs one backward pass per class). Reported: wall time of each
(median, min..max over repetitions), the speed-up, the largest absolute difference between the two
sets of attributions, and the additivity error of each (|sum(phi) + base - f(x)|).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from benchmarks.common import Stat, loadavg, log, parser, setup_logging, table


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--background", type=int, default=100)
    p.add_argument("--hidden", type=int, nargs="+", default=[128])
    # shap's side takes minutes on 1,000 samples here: one repetition unless asked for more.
    p.set_defaults(repeats=1)
    args = p.parse_args()
    setup_logging()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    import shap

    from pipeline import explain, fast_deep
    from pipeline.model import MLP

    n, b, repeats = (20, 10, 1) if args.quick else (args.samples, args.background, args.repeats)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 784)).astype(np.float32)
    background = rng.normal(size=(b, 784)).astype(np.float32)
    torch.manual_seed(0)
    net = MLP(784, 10, args.hidden, "relu", 0.2).eval()
    with torch.inference_mode():
        outputs = net(torch.from_numpy(X)).double().numpy()
    log.info(
        "explain: %d samples x 784 features, %d background rows, MLP 784-%s-10, torch threads %d, "
        "%d repetitions, load %s",
        n,
        b,
        "-".join(map(str, args.hidden)),
        torch.get_num_threads(),
        repeats,
        loadavg(),
    )

    def plain() -> tuple[np.ndarray, np.ndarray]:
        explainer = shap.DeepExplainer(net, torch.from_numpy(background))
        values = np.asarray(explainer.shap_values(torch.from_numpy(X), check_additivity=False))
        return values, np.asarray(explainer.expected_value)

    def fast() -> tuple[np.ndarray, np.ndarray]:
        return fast_deep.deep_shap(net, background, X)

    times: dict[str, list[float]] = {"shap": [], "glassnet": []}
    results = {}
    ratios = []
    for rep in range(repeats):
        took = {}
        for side in ("shap", "glassnet") if rep % 2 == 0 else ("glassnet", "shap"):
            start = time.perf_counter()
            results[side] = (plain if side == "shap" else fast)()
            took[side] = time.perf_counter() - start
            times[side].append(took[side])
        ratios.append(took["shap"] / took["glassnet"])
    diff = float(np.abs(results["shap"][0] - results["glassnet"][0]).max())
    additivity = {
        side: float(
            explain.additivity_error(v.astype(np.float64), np.asarray(base, np.float64), outputs).max()
        )
        for side, (v, base) in results.items()
    }
    s, g, r = Stat(times["shap"]), Stat(times["glassnet"]), Stat(ratios)
    log.info("")
    table(
        ["side", "seconds", "speed-up", "max |diff| vs shap", "additivity max error"],
        [
            ["shap.DeepExplainer (plain call)", s.fmt(2), "1.00x", "0", f"{additivity['shap']:.1e}"],
            [
                "glassnet (pipeline.fast_deep)",
                g.fmt(2),
                f"{r.median:.1f}x [{r.lo:.1f}..{r.hi:.1f}]",
                f"{diff:.1e}",
                f"{additivity['glassnet']:.1e}",
            ],
        ],
    )
    log.info("targets: speed-up >= 2x, max |diff| <= 1e-4; load after %s", loadavg())


if __name__ == "__main__":
    main()
