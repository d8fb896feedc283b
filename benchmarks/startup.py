"""Pipeline start-up: a cold `dvc repro` of the default pipeline, stage by stage, and a no-op one.

    python -m benchmarks.startup                # the default digits pipeline, as a user runs it
    python -m benchmarks.startup --quick        # smoke test: 2 epochs, tiny explain settings
    python -m benchmarks.startup --baseline ../old   # against another checkout, alternating runs

The project (conf/, pipeline/, dvc.yaml, params.yaml, ...) is copied into a temporary git
repository and `dvc repro` runs there from scratch with PYTHONPROFILEIMPORTTIME=1, so every stage
process reports its imports. Per stage: wall time (between DVC's "Running stage" lines), the time
spent importing (sum of the top-level imports' cumulative times), of which MLflow, Lightning,
torch and SHAP, and the rest ("work": Hydra, the stage's computation, MLflow calls, writing files).
The cold run is repeated ``--repeats`` times, each in a fresh copy (figures: median [min..max];
per stage: medians). Then the no-op `dvc repro` (nothing changed) is timed ``--repeats`` times.
The report is checked too: stage wall, HTML size, embedded PNGs and how many of them are duplicates.

``--baseline DIR`` (e.g. a `git worktree` of an earlier commit) runs DIR's pipeline cold as well,
in mirrored pairs (baseline, this, then this, baseline; the count is rounded up to whole pairs):
these machines drift by 10-30% over minutes, and within a mirrored pair each side's two runs sum
to the same mean position, so a steady drift cancels in the pair's ratio. It prints both sides,
the ratio of their medians, each pair's ratio (the sum of this checkout's two runs over the
baseline's), and the CPU time of each cold run (user + system of every process `dvc repro`
started): the work each side does, which a second process can hide from the wall clock but not
from the CPU.
``--set KEY=VALUE`` (repeatable) changes this checkout's params.yaml only: with
``--set explain.sanity.enabled=false --set explain.surrogate.enabled=false`` the comparison with
an older checkout leaves out the randomisation check and the surrogate tree, which it lacked.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import ROOT, Stat, loadavg, log, parser, setup_logging, table

PROJECT_FILES = [
    "conf",
    "pipeline",
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    ".dvc/config",
    ".dvcignore",
    ".gitignore",
]
QUICK = {
    "trainer": {"max_epochs": 2, "enable_progress_bar": False},
    "explain": {"n_samples": 16, "n_background": 16, "n_examples": 4},
    "visualize": {"n_units": 16, "tsne_max_samples": 150},
}
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
WATCHED = ("mlflow", "pytorch_lightning", "torch", "shap", "sklearn", "matplotlib.pyplot", "seaborn")
TARGETS = {"cold": 25.0, "noop": 1.0, "report": 3.0, "html_mb": 5.0}


def env() -> dict[str, str]:
    out = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out.pop("MLFLOW_TRACKING_URI", None)
    return out


def set_params(params: dict[str, object], assignments: list[str]) -> None:
    """Apply ``key.sub=value`` assignments (values parsed as YAML) to a params mapping in place."""
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep:
            raise SystemExit(f"--set {assignment!r}: expected KEY=VALUE, e.g. explain.sanity.enabled=false")
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                raise SystemExit(f"--set {assignment!r}: params.yaml has no group {key.rsplit('.', 1)[0]!r}")
            node = child
        if leaf not in node:
            raise SystemExit(f"--set {assignment!r}: params.yaml has no key {key!r}")
        node[leaf] = yaml.safe_load(raw)


def copy_project(root: Path, quick: bool, source: Path = ROOT, assignments: list[str] | None = None) -> None:
    for name in PROJECT_FILES:
        src, dst = source / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    if quick or assignments:
        params = yaml.safe_load((root / "params.yaml").read_text())
        for group, values in QUICK.items() if quick else ():
            params[group].update(values)
        set_params(params, assignments or [])
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@glassnet"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)


def children_cpu() -> float:
    """User + system seconds of this process's ended (and waited-for) descendants so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pair_ratios(side: list[float], reference: list[float]) -> list[float]:
    """Per mirrored pair of runs (2k, 2k+1): the side's summed time over the reference's."""
    return [sum(side[i : i + 2]) / sum(reference[i : i + 2]) for i in range(0, len(side) - 1, 2)]


def cold_repro(root: Path) -> tuple[float, list[tuple[float, str]], float]:
    """Wall time of `dvc repro`, its output lines with the time each arrived, and its CPU time
    (every process it started: DVC waits for each stage)."""
    lines: list[tuple[float, str]] = []
    cpu = children_cpu()
    start = time.perf_counter()
    with subprocess.Popen(
        ["dvc", "repro"],
        cwd=root,
        env={**env(), "PYTHONPROFILEIMPORTTIME": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(line for _, line in lines if not line.startswith("import time:"))[-3000:]
        raise SystemExit(f"dvc repro failed:\n{tail}")
    return wall, lines, children_cpu() - cpu


def per_stage(wall: float, lines: list[tuple[float, str]]) -> list[dict[str, float | str]]:
    """Split the output at "Running stage" lines; sum each stage's import times."""
    stages: list[dict[str, float | str]] = []
    for t, line in lines:
        found = re.match(r"Running stage '([^']+)'", line)
        if found:
            if stages:
                stages[-1]["wall"] = t - float(stages[-1]["start"])
            stages.append({"stage": found.group(1), "start": t, "imports": 0.0})
            continue
        match = IMPORT_LINE.match(line)
        if match and stages:
            cumulative, depth, name = int(match.group(2)) / 1e6, len(match.group(3)), match.group(4)
            current = stages[-1]
            if depth == 1:  # a top-level import of the stage process
                current["imports"] = float(current["imports"]) + cumulative
            if name in WATCHED and name not in current:
                current[name] = cumulative
    if stages:
        # The last stage ends when DVC has written dvc.lock: close enough, and said so in the README.
        stages[-1]["wall"] = wall - float(stages[-1]["start"])
    return stages


def check_report(html: Path) -> dict[str, float]:
    text = html.read_text()
    uris = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    digests = [hashlib.sha1(base64.b64decode(u)).hexdigest() for u in uris]  # noqa: S324 -- identity only
    return {
        "html_mb": len(text.encode()) / 1e6,
        "pngs": len(uris),
        "duplicate_pngs": len(digests) - len(set(digests)),
    }


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--baseline", default="", help="another checkout to run alternately and compare with")
    cli.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a param of this checkout only"
    )
    args = cli.parse_args()
    setup_logging()
    repeats = 1 if args.quick else args.repeats
    if args.baseline and not args.quick:
        repeats += repeats % 2  # whole mirrored pairs
    log.info(
        "startup: %d cold and %d no-op `dvc repro` of the %s pipeline%s, load %s",
        repeats,
        repeats,
        "quick" if args.quick else "default",
        f" with {', '.join(args.set)}" if args.set else "",
        loadavg(),
    )
    colds: list[float] = []
    cpus: list[float] = []
    runs: list[list[dict[str, float | str]]] = []
    base_colds: list[float] = []
    base_cpus: list[float] = []
    base_runs: list[list[dict[str, float | str]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            # Each cold run in a new copy: nothing cached, no MLflow store yet (the first run a
            # user makes; later ones find the store and are ~1 s faster).
            root = Path(tmp) / f"project{rep}"
            copy_project(root, args.quick, assignments=args.set)
            sides = [(root, colds, cpus, runs)]
            if args.baseline:
                base = Path(tmp) / f"baseline{rep}"
                copy_project(base, args.quick, Path(args.baseline).resolve())
                sides.insert(0, (base, base_colds, base_cpus, base_runs))
                if rep % 2:  # mirrored pairs: baseline, this, then this, baseline
                    sides.reverse()
            for project, walls, cpu_times, stage_runs in sides:
                wall, lines, cpu = cold_repro(project)
                walls.append(wall)
                cpu_times.append(cpu)
                stage_runs.append(per_stage(wall, lines))
        if args.baseline:
            _compare(base_runs, runs, (base_colds, colds), (base_cpus, cpus))
        load_cold = loadavg()
        rows = []
        for i, first in enumerate(runs[0]):

            def med(key: str, i: int = i) -> float:
                return Stat([float(r[i].get(key, 0.0)) for r in runs]).median

            w, imp = med("wall"), med("imports")
            rows.append(
                [
                    first["stage"],
                    f"{w:.1f}",
                    f"{imp:.1f}",
                    *(f"{med(name):.1f}" for name in ("mlflow", "pytorch_lightning", "torch", "shap")),
                    f"{w - imp:.1f}",
                ]
            )
        log.info("")
        log.info("per stage, median of %d cold runs:", repeats)
        table(["stage", "wall s", "imports s", "mlflow", "lightning", "torch", "shap", "work s"], rows)
        cold = Stat(colds)
        dvc_own = Stat([c - sum(float(s["wall"]) for s in r) for c, r in zip(colds, runs, strict=True)])
        log.info("")
        log.info(
            "cold `dvc repro`: %s (target <= %.0f s; %.2fx), of which DVC itself %.1f s; CPU %s; load %s",
            cold.fmt(1),
            TARGETS["cold"],
            cold.median / TARGETS["cold"],
            dvc_own.median,
            Stat(cpus).fmt(1),
            load_cold,
        )
        noop = Stat([_timed_noop(root) for _ in range(repeats)])
        log.info(
            "no-op `dvc repro`: %s (target <= %.1f s; %.2fx); load %s",
            noop.fmt(2),
            TARGETS["noop"],
            noop.median / TARGETS["noop"],
            loadavg(),
        )
        report_wall = Stat([next(float(s["wall"]) for s in r if s["stage"] == "report") for r in runs])
        html = check_report(root / "reports" / "index.html")
        log.info(
            "report stage: %s (target <= %.0f s); HTML %.2f MB (target <= %.0f MB), "
            "%d PNGs embedded, %d duplicates",
            report_wall.fmt(1),
            TARGETS["report"],
            html["html_mb"],
            TARGETS["html_mb"],
            html["pngs"],
            html["duplicate_pngs"],
        )


def _compare(
    base_runs: list[list[dict[str, float | str]]],
    runs: list[list[dict[str, float | str]]],
    walls: tuple[list[float], list[float]],
    cpus: tuple[list[float], list[float]],
) -> None:
    """Per-stage medians of the baseline and of this checkout, and the cold runs' ratios (of
    medians, and per mirrored pair), in wall and CPU time; each pair is (baseline, this)."""

    def med(rs: list[list[dict[str, float | str]]], stage: str) -> float:
        return Stat([next(float(s["wall"]) for s in r if s["stage"] == stage) for r in rs]).median

    rows = []
    for entry in runs[0]:
        name = str(entry["stage"])
        old = (
            med(base_runs, name)
            if all(any(s["stage"] == name for s in r) for r in base_runs)
            else float("nan")
        )
        new = med(runs, name)
        rows.append([name, f"{old:.1f}", f"{new:.1f}", f"{new / old:.2f}x"])
    log.info("")
    log.info("per stage, median of %d alternating cold runs each:", len(runs))
    table(["stage", "baseline s", "this s", "ratio"], rows)
    for what, (base, this) in (("wall", walls), ("CPU", cpus)):
        ratios = Stat(pair_ratios(this, base) or [float("nan")])  # nan with --quick: one run each
        pairs = f"{ratios.median:.3f}x [{ratios.lo:.3f}..{ratios.hi:.3f}]"
        log.info(
            "cold `dvc repro`, %s: baseline %s, this %s: %.3fx (medians); mirrored pairs %s",
            what,
            Stat(base).fmt(1),
            Stat(this).fmt(1),
            Stat(this).median / Stat(base).median,
            pairs,
        )


def _timed_noop(root: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(["dvc", "repro"], cwd=root, env=env(), capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0 or "up to date" not in out.stdout + out.stderr:
        raise SystemExit(f"no-op dvc repro did work or failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return took


if __name__ == "__main__":
    main()
