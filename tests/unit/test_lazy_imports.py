"""The package namespaces load lazily: ``mdp run`` imports only the modules its job uses."""

from __future__ import annotations

import subprocess
import sys

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
    heavy = {"mdp.operators.join", "mdp.operators.dedupe", "mdp.operators.throttle", "mdp.stores.postgres"}
    assert not heavy & loaded, f"imported at start-up: {sorted(heavy & loaded)}"
    assert "numpy" not in loaded  # only the operators that compute with it pull it in


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
