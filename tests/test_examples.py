"""The training example runs (a short version) and learns."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_mlp.py"


def test_train_mlp_quick_run_learns(capsys):
    pytest.importorskip("sklearn", reason="the example's data set ships with scikit-learn")
    spec = importlib.util.spec_from_file_location("train_mlp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--quick"])
    out = capsys.readouterr().out
    assert set(results) == {"relu", "tanh"}
    for r in results.values():
        errors = r["errors"]
        assert len(errors) == 3 and errors[-1] < errors[0] < 0.9  # chance is 0.9
        assert r["test_acc"] > 0.5
        assert set(r["timing"]) == {"numpy", module.fusedact._dispatch.auto_host_choice("bias_act")}
    assert "| relu |" in out and "| tanh |" in out
