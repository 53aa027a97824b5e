"""Start-up: the package namespaces load lazily (``mdp run`` imports only the modules its job uses), and
the console script loads them with the garbage collector paused."""

from __future__ import annotations

import gc
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import mdp
import mdp.operators


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_cli_does_not_import_every_operator_and_store() -> None:
    loaded = _modules_after("import mdp.cli")
    assert "mdp.cli" in loaded
    heavy = {
        "mdp.operators.market.join",
        "mdp.operators.market.dedupe",
        "mdp.operators.market.throttle",
        "mdp.stores.postgres",
    }
    assert not heavy & loaded, f"imported at start-up: {sorted(heavy & loaded)}"
    assert "numpy" not in loaded  # only the operators that compute with it pull it in


def test_a_bars_job_builds_without_loading_the_snapshot_codec() -> None:
    """Operators import the snapshot module for its mixin; msgspec loads only when a state is encoded."""
    loaded = _modules_after("from mdp.operators.bars import BarsOperator\nBarsOperator('1m')")
    assert "mdp.runtime.snapshots" in loaded
    assert "msgspec" not in loaded


@pytest.mark.parametrize("namespace", [mdp, mdp.operators])
def test_every_public_name_resolves(namespace: object) -> None:
    for name in namespace.__all__:  # type: ignore[attr-defined]
        assert getattr(namespace, name) is not None, name
    assert set(namespace.__all__) <= set(dir(namespace))  # type: ignore[attr-defined]


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = mdp.Nope  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        exec("from mdp.operators import Nope", {})


# counts the collections that start while the CLI is imported under ``collector_paused``
_PAUSED_IMPORT = """
import gc
starts = []
gc.callbacks.append(lambda phase, info: phase == "start" and starts.append(info["generation"]))
from mdp.entry import collector_paused
before = len(starts)
with collector_paused():
    import mdp.cli
print(len(starts) - before, gc.isenabled(), gc.get_freeze_count())
"""


def test_the_cli_loads_without_collections_and_is_frozen_after() -> None:
    done = subprocess.run([sys.executable, "-c", _PAUSED_IMPORT], capture_output=True, text=True, check=True)
    collections, enabled, frozen = done.stdout.split()
    assert collections == "0"  # unpaused, importing the CLI runs some 150 collections
    assert enabled == "True"  # the collector is back on for the run
    assert int(frozen) > 10_000  # what was loaded is out of the collections' way


def test_the_pause_keeps_a_disabled_collector_disabled() -> None:
    from mdp.entry import collector_paused

    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_the_console_script_starts_with_the_collector_paused() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["mdp"] == "mdp.entry:main"
