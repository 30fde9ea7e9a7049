"""bench/gpu_check.py, the script a GPU session runs: its error measure and a dry run on the
CUDA simulator (tiny sizes), so that the one GPU run a task may get is not spent on a bug in
the script."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import fusedact

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ulp_diff_allows_flush_to_zero_only_below_the_smallest_normal():
    gc = _gpu_check()
    tiny = np.finfo(np.float32).tiny
    sub = np.array([tiny * 0.99], np.float64)  # a subnormal float32 result
    assert gc.ulp_diff(np.zeros(1, np.float32), sub) == 0.0
    normal = np.array([tiny * 1.01], np.float64)
    assert gc.ulp_diff(np.zeros(1, np.float32), normal) > 1e6
    assert gc.ulp_diff(np.array([np.nan], np.float32), np.array([1.0])) == np.inf


def test_dry_run_on_the_simulator_passes_every_check(capsys):
    if "cuda" not in fusedact.available_backends():
        pytest.skip("the cuda backend (or its simulator) is unavailable: pip install 'fusedact[cuda-sim]'")
    rc = _gpu_check().main(["--dry-run-on-simulator", "--check-size", "4096", "--bench-size",
                            "4096", "--repeats", "1", "--ops", "sigmoid", "gelu"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "0 over the accuracy limit" in out
