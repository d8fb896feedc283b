"""What each DVC stage really runs and reads, derived from the code (used by the tests of dvc.yaml).

- ``import_closure(module)``: every module of ``pipeline/`` a stage's process can import: its
  import statements anywhere in a module (top level or inside functions), transitively, with the
  packages they sit in, the drawing modules the figure registry names for the stage, and the
  modules of the ``_target_`` entries of the config sections the stage declares.
- ``config_reads(modules)``: the config keys those modules read, as attribute chains on ``cfg``
  (``cfg.explain.n_samples`` -> ``explain.n_samples``; ``ecfg = cfg.explain`` reads all of
  ``explain``); passing the whole ``cfg`` to OmegaConf's ``to_container``/``to_yaml`` reads
  everything ("*").
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
# Validation and the entry point read every key by design, whatever the stage.
NOT_READERS = {"pipeline.config", "pipeline.cli", "pipeline.tools.params"}
# OmegaConf's functions that turn a whole config into plain data or text.
WHOLE_CONFIG_CALLS = {"to_container", "to_yaml"}


def module_file(name: str) -> Path | None:
    """The file of module ``pipeline.x.y``: pipeline/x/y.py or pipeline/x/y/__init__.py."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from pipeline import io` imports the module pipeline.io; `from pipeline.x import f` a name.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] == "pipeline" and module_file(n) is not None}


def _with_packages(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def import_closure(start: Iterable[str], stage: str | None = None, targets: Iterable[str] = ()) -> set[str]:
    """Modules reachable from ``start`` (see the module docstring)."""
    from pipeline.plots import figures

    todo = [*start, *targets]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        for found in _with_packages(name):
            if found in seen or module_file(found) is None:
                continue
            seen.add(found)
            path = module_file(found)
            assert path is not None
            todo.extend(_imported(ast.parse(path.read_text())))
            if found == "pipeline.plots.figures" and stage is not None:
                todo.extend(s.draw.split(":")[0] for s in figures.FIGURES if s.stage == stage)
    return seen


def dep_path(name: str) -> str:
    path = module_file(name)
    assert path is not None
    return str(path.relative_to(ROOT))


def _chain(node: ast.AST) -> list[str] | None:
    """``cfg.a.b`` -> ["cfg", "a", "b"]; anything else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def config_reads(modules: Iterable[str]) -> set[str]:
    """Config keys read by ``modules`` (see the module docstring), ``paths`` left out: those are
    dvc.yaml's deps and outs, checked against the config by their own test."""
    reads: set[str] = set()
    for name in modules:
        if name in NOT_READERS:
            continue
        path = module_file(name)
        assert path is not None
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        aliases: dict[str, list[str]] = {}
        for node in ast.walk(tree):  # `ecfg = cfg.explain`
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                chain = _chain(node.value)
                if chain and chain[0] == "cfg" and len(chain) > 1:
                    aliases[node.targets[0].id] = chain[1:]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                )
                if func in WHOLE_CONFIG_CALLS and any(
                    isinstance(a, ast.Name) and a.id == "cfg" for a in node.args
                ):
                    reads.add("*")
            if not isinstance(node, ast.Attribute | ast.Name) or isinstance(parents.get(node), ast.Attribute):
                continue  # only the outermost attribute of a chain is the read
            chain = _chain(node)
            if not chain or len(chain) < 2 and chain[0] not in aliases:
                continue
            if chain[0] == "cfg":
                keys = chain[1:]
            elif chain[0] in aliases and not (
                isinstance(parents.get(node), ast.Assign) and node in parents[node].targets  # type: ignore[attr-defined]
            ):
                keys = [*aliases[chain[0]], *chain[1:]]
            else:
                continue
            if keys[0] != "paths":
                reads.add(".".join(keys))
    return reads


def covered(key: str, declared: Iterable[str]) -> bool:
    """A read of ``key`` is declared when a declared key equals it or contains it."""
    return any(key == d or key.startswith(d + ".") for d in declared)
