"""The layer contract (``[tool.importlinter]`` in pyproject.toml) holds, and the checker catches an
upward import: a copy of the package with one added import from the core to the CLI fails it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
]


def lint(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [*LINT, "--no-cache", str(REPO / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_layers(tmp_path: Path) -> None:
    result = lint(REPO / "src", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract_and_is_named(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(REPO / "src" / "mdp", copy / "mdp", ignore=shutil.ignore_patterns("__pycache__"))
    records = copy / "mdp" / "records.py"
    records.write_text(records.read_text(encoding="utf-8") + "\nfrom mdp.operators import bars  # upward\n")
    result = lint(copy, tmp_path)
    assert result.returncode != 0
    assert "0 kept, 1 broken" in result.stdout
    assert "mdp.records is not allowed to import mdp.operators" in result.stdout
