"""What a run needs to be reproduced, as tags: the code's commit, library versions, and the
fingerprint DVC records for a data file."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LIBRARIES = (
    "torch",
    "pytorch-lightning",
    "mlflow",
    "shap",
    "scikit-learn",
    "numpy",
    "hydra-core",
    "dvc",
    "glassnet",
)


def git_info(root: Path) -> dict[str, str]:
    """Commit and dirtiness of the repository at ``root`` ('unknown' outside git)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": dirty}


def versions() -> dict[str, str]:
    """Versions of the libraries a run depends on (those installed), and Python's."""
    found = {}
    for name in LIBRARIES:
        try:
            found[f"version.{name}"] = version(name)
        except PackageNotFoundError:
            continue
    found["version.python"] = platform.python_version()
    return found


def file_md5s(path: Path) -> dict[str, str]:
    """{relative path: MD5} of every file under folder ``path``."""
    return {
        file.relative_to(path).as_posix(): file_md5(file)
        for file in sorted(p for p in path.rglob("*") if p.is_file())
    }


def combined_md5(md5s: dict[str, str]) -> str:
    """One fingerprint of files given as {name: MD5}: the MD5 of their sorted "name MD5" lines."""
    digest = hashlib.md5()  # noqa: S324 -- a content fingerprint, not security
    for name in sorted(md5s):
        digest.update(f"{name} {md5s[name]}\n".encode())
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    """The MD5 DVC would record for a file (so a run can be matched to dvc.lock)."""
    digest = hashlib.md5()  # noqa: S324 -- a content fingerprint, as DVC uses, not security
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
