"""Every config the README names exists in conf/, and the README's commands are the Makefile's."""

from __future__ import annotations

import re

import pytest

from tests.conftest import CONF, ROOT

README = (ROOT / "README.md").read_text()


def _named(pattern: str) -> set[str]:
    return set(re.findall(pattern, README))


@pytest.mark.parametrize("group", ["data", "model", "optim", "trainer", "explain", "report", "visualize"])
def test_group_options_named_in_readme_exist(group: str) -> None:
    for option in _named(rf"(?<![\w.+/]){group}=(\w+)"):
        assert (CONF / group / f"{option}.yaml").exists(), f"README names {group}={option}"


def test_presets_and_launchers_named_in_readme_exist() -> None:
    experiments = _named(r"\+experiment=(\w+)")
    launchers = _named(r"hydra/launcher=(\w+)")
    assert experiments and launchers
    for name in experiments:
        assert (CONF / "experiment" / f"{name}.yaml").exists(), name
    for name in launchers:
        assert (CONF / "hydra" / "launcher" / f"{name}.yaml").exists(), name


def test_readme_commands_are_make_targets_and_ci_runs_the_test_command() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("pipeline", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
