"""Explanation: glassnet's DeepSHAP against the plain shap.DeepExplainer call.

    python -m benchmarks.explain                # MLP: 1,000 MNIST-shaped samples, 100 background rows
    python -m benchmarks.explain --model cnn    # CNN: 200 MNIST-shaped images, 100 background images
    python -m benchmarks.explain --quick        # smoke test: 20 samples, 10 background rows

Both sides explain the same network in eval mode on the same synthetic data: ``--model mlp`` the
MLP 784-128-ReLU-Dropout-10 (glassnet's side: the closed form, pipeline.explain.fast_deep), ``--model cnn``
the default CNN (conv 16, 32, 3x3, max pool 2 -> 64 -> 10) on 1x28x28 images (glassnet's side: the
batched DeepLIFT rules, pipeline.explain.deep_lift). Reference:
``shap.DeepExplainer(model, background).shap_values(x)`` called the plain way (it loops over
samples and runs one backward pass per class). Reported: wall time of each
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
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    p.add_argument("--samples", type=int, default=None, help="default: 1000 (mlp), 200 (cnn)")
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

    from pipeline.explain import deep_lift, fast_deep, trust
    from pipeline.nets.model import CNN, MLP, Shaped

    samples = args.samples or (200 if args.model == "cnn" else 1000)
    n, b, repeats = (20, 10, 1) if args.quick else (samples, args.background, args.repeats)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 784)).astype(np.float32)
    background = rng.normal(size=(b, 784)).astype(np.float32)
    torch.manual_seed(0)
    net: torch.nn.Module
    if args.model == "cnn":
        # shap is given the flat-row view too (Shaped reshapes to 1x28x28), so both sides see one model.
        net, ours, name = (
            Shaped(CNN((1, 28, 28), 10), (1, 28, 28)).eval(),
            deep_lift.deep_shap,
            "pipeline.explain.deep_lift",
        )
        shape = "CNN 1x28x28 -> conv 16, 32 -> 64 -> 10"
    else:
        net, ours, name = (
            MLP(784, 10, args.hidden, "relu", 0.2).eval(),
            fast_deep.deep_shap,
            "pipeline.explain.fast_deep",
        )
        shape = "MLP 784-" + "-".join(map(str, args.hidden)) + "-10"
    with torch.inference_mode():
        outputs = net(torch.from_numpy(X)).double().numpy()
    log.info(
        "explain: %d samples x 784 features, %d background rows, %s, torch threads %d, "
        "%d repetitions, load %s",
        n,
        b,
        shape,
        torch.get_num_threads(),
        repeats,
        loadavg(),
    )

    def plain() -> tuple[np.ndarray, np.ndarray]:
        explainer = shap.DeepExplainer(net, torch.from_numpy(background))
        values = np.asarray(explainer.shap_values(torch.from_numpy(X), check_additivity=False))
        return values, np.asarray(explainer.expected_value)

    def fast() -> tuple[np.ndarray, np.ndarray]:
        return ours(net, background, X)

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
        side: float(trust.additivity_error(v.astype(np.float64), np.asarray(base, np.float64), outputs).max())
        for side, (v, base) in results.items()
    }
    s, g, r = Stat(times["shap"]), Stat(times["glassnet"]), Stat(ratios)
    log.info("")
    table(
        ["side", "seconds", "speed-up", "max |diff| vs shap", "additivity max error"],
        [
            ["shap.DeepExplainer (plain call)", s.fmt(2), "1.00x", "0", f"{additivity['shap']:.1e}"],
            [
                f"glassnet ({name})",
                g.fmt(2),
                f"{r.median:.1f}x [{r.lo:.1f}..{r.hi:.1f}]",
                f"{diff:.1e}",
                f"{additivity['glassnet']:.1e}",
            ],
        ],
    )
    target = 5 if args.model == "cnn" else 2
    log.info("targets: speed-up >= %dx, max |diff| <= 1e-4; load after %s", target, loadavg())


if __name__ == "__main__":
    main()
