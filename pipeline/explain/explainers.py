"""The SHAP explainers: one function each, chosen by ``explain.options._target_``.

An explainer is a function ``(net, background (m, F), X (n, F), **options) -> (values (n, F, C),
base (n, C))``: the attributions of each output for each explained row, and the base value
each row's attributions start from. ``conf/explain/<name>.yaml`` names it (``_target_``, with
``_partial_: true``: the stage calls it on the network and the rows) and sets its keyword-only
options; ``from_config`` checks them against the function's signature before any work.

To add an explainer, write the function here (or anywhere importable) and its yaml; mark it
``@computed_by("what computes it")`` for the report (else its qualified name is shown).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from hydra.utils import get_object, instantiate
from torch import nn

from pipeline import progress, signature
from pipeline.errors import ConfigError
from pipeline.explain import deep_lift, fast_deep
from pipeline.explain.rules import unpooling_allowed
from pipeline.nets import predict

# (net, background (m, F), X (n, F), **options) -> (values (n, F, C), base (n, C))
ExplainFn = Callable[..., tuple[np.ndarray, np.ndarray]]
Fn = TypeVar("Fn", bound=ExplainFn)
KEY = "explain.options"
PROGRESS_STEPS = 100  # pieces at most, per progress bar


def computed_by(path: str | Callable[[nn.Module, np.ndarray], str]) -> Callable[[Fn], Fn]:
    """Mark an explainer with what computes its values, as metrics/explain.json ("path") and the
    report name it: a text, or a function of the network and a few input rows (deep_shap's)."""

    def mark(fn: Fn) -> Fn:
        fn.computed_by = path  # type: ignore[attr-defined]
        return fn

    return mark


def name_of(explainer: Callable[..., Any]) -> str:
    """The explainer's name, as the log, the report and metrics/explain.json show it: its function's
    name, without the ``_shap`` the shipped ones end in (``deep_shap`` -> ``deep``)."""
    fn = explainer.func if isinstance(explainer, functools.partial) else explainer
    return str(fn.__name__).removesuffix("_shap")


def path_of(explainer: Callable[..., Any], net: nn.Module, rows: np.ndarray) -> str:
    """What computes ``explainer``'s values for ``net`` (``rows``: a few input rows to trace it
    with); an explainer not marked by ``computed_by`` is named by its qualified name."""
    fn = explainer.func if isinstance(explainer, functools.partial) else explainer
    path = getattr(fn, "computed_by", None)
    if path is None:
        return f"{fn.__module__}.{fn.__qualname__}"
    return path(net, rows) if callable(path) else str(path)


def from_config(options: Mapping[str, Any], seed: int) -> functools.partial[tuple[np.ndarray, np.ndarray]]:
    """The explainer ``explain.options`` names (``_target_``) with its options bound, and ``seed``
    where it takes one. Options are checked against the function's keyword-only parameters
    (names, and integers where the default is one); anything wrong raises ConfigError naming the key."""
    target = options.get("_target_")
    if not target:
        raise ConfigError(
            f"Config key '{KEY}._target_' is missing: choose an explainer, e.g. explain=deep "
            "(conf/explain/<name>.yaml names its function)."
        )
    try:
        fn = get_object(str(target))
    except (ImportError, ValueError):  # Hydra: no such module or name
        fn = None
    except Exception as err:  # the module is there but fails to import
        raise ConfigError(f"Config key '{KEY}._target_' = {target!r} fails to import: {err}") from None
    if not callable(fn):
        raise ConfigError(
            f"Config key '{KEY}._target_' = {target!r} names no importable function: check the "
            "module and name, or choose a shipped explainer (explain=deep, gradient, permutation, "
            "partition, kernel)."
        )
    if options.get("_partial_") is not True:
        raise ConfigError(
            f"Config key '{KEY}._partial_' must be true: the stage calls the explainer on the "
            "network and the rows itself (see conf/explain/deep.yaml)."
        )
    signature.check_keys(
        fn,
        map(str, options),
        KEY,
        target=str(target),
        reserved={"seed": "it passes the top-level seed; set seed=... instead"},
        setter="the explain stage",
        keyword_only=True,
    )
    check_values(fn, options)
    takes, _ = signature.accepted(fn, keyword_only=True)
    bound = instantiate(dict(options), **({"seed": seed} if "seed" in takes else {}))
    assert isinstance(bound, functools.partial)
    return bound


def check_values(fn: Callable[..., Any], options: Mapping[str, Any]) -> None:
    """An option whose default is an integer (sample counts, evaluations) must be one, at least 1."""
    defaults = {name: p.default for name, p in inspect.signature(fn).parameters.items()}
    for key, value in options.items():
        default = defaults.get(str(key))
        if not isinstance(default, int) or isinstance(default, bool):
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"Config key '{KEY}.{key}' = {value!r} must be an integer.")
        if value < 1:
            raise ConfigError(f"Config key '{KEY}.{key}' = {value!r} must be at least 1.")


def per_sample(base: np.ndarray, n: int) -> np.ndarray:
    """Base values as (n, outputs) whatever shape the explainer gave them."""
    base = np.atleast_2d(np.asarray(base, dtype=np.float64))  # (outputs,) -> (1, outputs)
    return np.broadcast_to(base, (n, base.shape[-1])).copy()


def as_nfc(raw: Any) -> np.ndarray:
    """(n, features, outputs) float64: shap >= 0.45 returns one array, older releases a list per
    class; for a model with a single output (a regression) shap drops the last axis, put back here."""
    values = (np.stack(raw, axis=-1) if isinstance(raw, list) else np.asarray(raw)).astype(np.float64)
    return values[:, :, None] if values.ndim == 2 else values


def _require_torch(net: Any, name: str) -> None:
    if not isinstance(net, torch.nn.Module):
        raise ConfigError(
            f"explain={name} needs a PyTorch model (it backpropagates through it); got "
            f"{type(net).__name__}. Use a model-agnostic explainer: explain=permutation or explain=kernel."
        )


def _chain(net: nn.Module, rows: np.ndarray) -> list[deep_lift.Step] | None:
    """The network as a chain pipeline.explain.deep_lift can explain, or None."""
    if not isinstance(net, nn.Module) or len(rows) == 0:
        return None
    net.eval()
    sample = torch.from_numpy(np.ascontiguousarray(rows[:4], dtype=np.float32)).to(predict.device_of(net))
    return deep_lift.chain_of(net, sample)


def deep_path(net: nn.Module, rows: np.ndarray) -> str:
    """Which of deep_shap's three paths explains ``net`` (found by tracing ``rows``)."""
    if fast_deep.layers_of(net) is not None:
        return "closed form (pipeline.explain.fast_deep)"
    if _chain(net, rows) is not None:
        return "batched DeepLIFT (pipeline.explain.deep_lift)"
    return "shap.DeepExplainer"


@computed_by(deep_path)
def deep_shap(net: nn.Module, background: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeepExplainer's attributions (DeepLIFT rescale with a background distribution; exactly additive).

    Three paths give the same numbers (to 1e-4 and better; tests/explain/test_deep_lift.py and
    tests/explain/test_fast_deep.py compare each with shap.DeepExplainer): MLPs of Linear, elementwise and
    pass-through layers in closed form (pipeline.explain.fast_deep, ~100x faster); any other chain
    of layers, convolutional nets included, through pipeline.explain.deep_lift's batched rules (~5x
    faster); a network with branches or functional operations through shap.DeepExplainer itself.
    """
    if fast_deep.layers_of(net) is not None:
        values, base = fast_deep.deep_shap(net, background, X)
    elif _chain(net, background) is not None:
        values, base = deep_lift.deep_shap(net, background, X)
    else:
        return shap_deep(net, background, X)
    return values, per_sample(base, len(X))


# Leaf modules shap.DeepExplainer has a rule for (its PyTorch op handlers); a layer it does not
# know it passes through with only a warning. Not glassnet's vocabulary (pipeline.nets.layers):
# what shap itself supports.
SHAP_DEEP_LAYERS = frozenset(
    {
        "Linear",
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "AvgPool1d",
        "AvgPool2d",
        "AvgPool3d",
        "MaxPool1d",
        "MaxPool2d",
        "MaxPool3d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d",
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "Dropout",
        "Dropout2d",
        "Dropout3d",
        "Flatten",
        "Identity",
        "ReLU",
        "ELU",
        "Sigmoid",
        "Tanh",
        "Softplus",
        "Softmax",
        "LeakyReLU",
    }
)


def shap_deep(net: nn.Module, background: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """shap.DeepExplainer called the plain way (the reference pipeline.explain.fast_deep matches)."""
    import shap

    _require_torch(net, "deep")
    # shap treats a layer it does not know as pass-through (only a warning), which silently breaks
    # the attributions; refuse any layer outside the set shap's DeepExplainer propagates through.
    unknown = sorted({type(m).__name__ for m in net.modules() if not list(m.children())} - SHAP_DEEP_LAYERS)
    if unknown:
        raise ConfigError(
            f"explain=deep cannot propagate through layer(s) {', '.join(unknown)}; "
            "use explain=gradient (any differentiable model) or explain=permutation."
        )
    net.eval()
    explainer = shap.DeepExplainer(net, torch.from_numpy(background))
    # shap's rule for max pooling calls max_unpool2d, which torch flags as nondeterministic.
    with unpooling_allowed():
        values = as_nfc(explainer.shap_values(torch.from_numpy(X), check_additivity=False))
    return values, per_sample(np.asarray(explainer.expected_value), len(X))


@computed_by("shap.GradientExplainer")
def gradient_shap(
    net: nn.Module,
    background: np.ndarray,
    X: np.ndarray,
    *,
    nsamples: int = 200,
    batch_size: int = 50,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """GradientExplainer (expected gradients): additive only in expectation, so its additivity
    error shrinks with ``nsamples`` but is never zero. Base value: the mean background output."""
    import shap

    _require_torch(net, "gradient")
    net.eval()
    explainer = shap.GradientExplainer(net, torch.from_numpy(background), batch_size=batch_size)
    values = as_nfc(explainer.shap_values(torch.from_numpy(X), nsamples=nsamples, rseed=seed))
    return values, per_sample(predict.outputs(net, background).mean(axis=0), len(X))


def in_pieces(call: Callable[[np.ndarray], Any], X: np.ndarray, name: str) -> list[Any]:
    """``call`` on consecutive pieces of the rows of ``X``, under a progress bar (model-agnostic
    explainers take seconds a row on images). Pieces change no value: the explainer is built once
    and explains each row alone, its random draws (kernel's coalitions, permutation's orders,
    seeded when it is built) following in the same order."""
    found = []
    with progress.bar(len(X), f"SHAP ({name})", "row") as shown:
        for piece in progress.chunks(len(X), PROGRESS_STEPS):
            found.append(call(X[piece]))
            shown.update(piece.stop - piece.start)
    return found


def _joined(results: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(values, base) of shap Explanations of consecutive pieces of the rows."""
    parts = [_explanation(result, len(result.values)) for result in results]
    return np.concatenate([v for v, _ in parts]), np.concatenate([b for _, b in parts])


def _explanation(result: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    base = np.asarray(result.base_values)
    if np.ndim(result.values) == 2:  # a single output: base values (n,), one per row
        base = base.reshape(-1, 1)
    return as_nfc(result.values), per_sample(base, n)


def _row_by_row(explainer: Any, X: np.ndarray, name: str, max_evals: int) -> tuple[np.ndarray, np.ndarray]:
    """A shap Explainer that takes ``max_evals`` (permutation, partition), run on pieces of ``X``."""
    return _joined(in_pieces(lambda rows: explainer(rows, max_evals=max_evals, silent=True), X, name))


@computed_by("shap.PermutationExplainer")
def permutation_shap(
    net: nn.Module,
    background: np.ndarray,
    X: np.ndarray,
    *,
    max_evals: int = 500,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """PermutationExplainer: model-agnostic, exactly additive (it walks whole permutations)."""
    import shap

    needed = 2 * X.shape[1] + 1
    if max_evals < needed:
        raise ConfigError(
            f"explain.options.max_evals={max_evals} is too small for the permutation explainer on "
            f"{X.shape[1]} features: it needs at least 2 x features + 1 = {needed}; "
            f"set explain.options.max_evals={needed} or more."
        )
    masker = shap.maskers.Independent(background)
    explainer = shap.PermutationExplainer(predict.logits_fn(net), masker, seed=seed)
    return _row_by_row(explainer, X, "permutation", max_evals)


@computed_by("shap.PartitionExplainer")
def partition_shap(
    net: nn.Module,
    background: np.ndarray,
    X: np.ndarray,
    *,
    max_evals: int = 500,
    clustering: str = "correlation",
) -> tuple[np.ndarray, np.ndarray]:
    """PartitionExplainer (Owen values over a feature hierarchy): model-agnostic, exactly additive.

    The hierarchy is a tabular clustering of the features (``shap.maskers.Partition``) for images too:
    shap's image masker needs OpenCV, which glassnet does not depend on.
    """
    import shap

    if background.std(axis=0).max() == 0:
        raise ConfigError(
            "explain=partition clusters features by their correlation over the background, "
            "but every background feature is constant; raise explain.n_background or use "
            "explain=permutation."
        )
    masker = shap.maskers.Partition(background, clustering=clustering)
    explainer = shap.PartitionExplainer(predict.logits_fn(net), masker)
    return _row_by_row(explainer, X, "partition", max_evals)


@computed_by("shap.KernelExplainer")
def kernel_shap(
    net: nn.Module,
    background: np.ndarray,
    X: np.ndarray,
    *,
    nsamples: int = 500,
    max_features: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """KernelExplainer (weighted linear regression over coalitions): model-agnostic and additive by
    its constraint, but each sample costs nsamples x background model calls plus a regression."""
    import shap

    n_features = X.shape[1]
    if n_features > max_features:
        raise ConfigError(
            f"explain=kernel on {n_features} features is impractically slow (and its "
            f"{nsamples} coalitions would cover them thinly); it is capped at explain.options."
            f"max_features={max_features}. Use explain=permutation (or explain=deep), or lower "
            "explain.n_samples and raise explain.options.max_features if you accept the cost."
        )
    explainer = shap.KernelExplainer(predict.logits_fn(net), background)
    # l1_reg=False: keep every feature (the default's feature selection costs a LARS fit per class).
    pieces = in_pieces(
        lambda rows: as_nfc(explainer.shap_values(rows, nsamples=nsamples, l1_reg=False, silent=True)),
        X,
        "kernel",
    )
    return np.concatenate(pieces), per_sample(np.asarray(explainer.expected_value), len(X))
