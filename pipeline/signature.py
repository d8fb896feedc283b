"""Config keys checked against the real signature of what they configure: the one checker for every
open section (a user's network, Trainer keywords, schedulers, losses, dataset loaders, explainers).

A key the callable does not take fails with the closest valid name (``difflib``) or, with none
close, the names it takes; a required argument nobody set fails naming it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from hydra.utils import get_object

from pipeline.errors import ConfigError

NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def accepted(fn: Callable[..., Any], *, keyword_only: bool = False) -> tuple[list[str], bool]:
    """The argument names ``fn`` takes by keyword (only its keyword-only ones with ``keyword_only``),
    and whether it takes any keyword (``**kwargs``)."""
    params = inspect.signature(fn).parameters.values()
    kinds = (inspect.Parameter.KEYWORD_ONLY,) if keyword_only else NAMED
    names = [p.name for p in params if p.kind in kinds]
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def check_keys(
    fn: Callable[..., Any],
    keys: Iterable[str],
    key: str,
    *,
    target: str,
    exclude: Collection[str] = (),
    reserved: Mapping[str, str] | None = None,
    setter: str = "the stage",
    keyword_only: bool = False,
) -> None:
    """Raise ConfigError naming the first of ``keys`` (under config key ``key``) that ``fn`` (named
    ``target`` in the message) does not take, with the closest valid name; Hydra's own keys
    (``_target_`` and the like) and ``exclude`` aside. ``reserved``: keys ``setter`` passes itself,
    each with what to do instead."""
    valid, takes_any = accepted(fn, keyword_only=keyword_only)
    reserved = reserved or {}
    choices = [v for v in valid if v not in reserved and v not in exclude]
    for name in keys:
        if (name.startswith("_") and name.endswith("_")) or name in exclude:
            continue
        if name in reserved:
            raise ConfigError(f"Config key '{key}.{name}' is set by {setter}: {reserved[name]}.")
        if name not in valid and not takes_any:
            close = difflib.get_close_matches(name, choices, n=1)
            if close:
                hint = f"did you mean '{key}.{close[0]}'?"
            elif choices:
                hint = f"it takes: {', '.join(choices)}."
            else:
                hint = "it takes no options."
            raise ConfigError(f"Config key '{key}.{name}' is not an argument of {target}: {hint}")


def missing_required(fn: Callable[..., Any], given: Collection[str]) -> list[str]:
    """The arguments ``fn`` requires (no default) that ``given`` does not hold."""
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind in NAMED and p.name not in given
    ]


def _locate(path: str, key: str) -> Any:
    """The object a dotted ``_target_`` names (Hydra's lookup: modules, then attributes)."""
    try:
        return get_object(path)
    except (ImportError, ValueError):
        raise ConfigError(
            f"Config key '{key}' = {path!r} names nothing importable: check the module and name."
        ) from None


def check_arguments(
    node: Any, key: str, *, exclude: Collection[str] = (), reserved: Mapping[str, str] | None = None
) -> None:
    """Raise ConfigError naming the first key of ``node`` that its ``_target_`` does not take, with
    the closest valid name (Hydra's own keys, ``_target_`` and the like, and ``exclude`` aside), or
    one the stage sets itself (``reserved``: what to do instead)."""
    target = node["_target_"]
    obj = _locate(target, f"{key}._target_")
    check_keys(
        obj, map(str, node), key, target=target, exclude=exclude, reserved=reserved, setter="the train stage"
    )
