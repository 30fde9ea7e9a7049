"""The numba backend's loops are cached on disk: a second process loads them instead of
compiling (counted by Numba's own cache statistics, not by timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import fusedact

pytestmark = pytest.mark.skipif("numba" not in fusedact.available_backends(),
                                reason="numba is not installed")

PROBE = r"""
import json, numpy as np, fusedact
x = np.linspace(-4, 4, 100)  # float64: the float64 loops, key "gelu"
fusedact.gelu(x, backend="numba")
fusedact.softmax(x.reshape(4, 25), backend="numba")
be = fusedact._dispatch._load("numba")[0]
serial_gelu = be._loops["gelu"][0][0]
serial_softmax = be._loops[("rows", "softmax", False)][0]
print(json.dumps({name: [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())]
                  for name, d in (("gelu", serial_gelu), ("softmax", serial_softmax))}))
"""


def _run(env):
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_second_process_loads_compiled_loops_from_disk(tmp_path):
    env = dict(os.environ, FUSEDACT_CACHE_DIR=str(tmp_path / "fusedact"),
               NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    first = _run(env)
    assert first["gelu"][0] == 0 and first["gelu"][1] >= 1  # compiled
    second = _run(env)
    for name in ("gelu", "softmax"):
        hits, misses = second[name]
        assert hits >= 1 and misses == 0, (name, second)
    # The kernel's module copy went to the cache folder, named by a hash of the sources.
    assert any(p.name.startswith("fusedact_numba_gelu_") for p in (tmp_path / "fusedact").iterdir())


def test_cache_can_be_switched_off(tmp_path):
    env = dict(os.environ, FUSEDACT_CACHE_DIR=str(tmp_path / "fusedact"),
               NUMBA_CACHE_DIR=str(tmp_path / "numba"), FUSEDACT_NUMBA_CACHE="0")
    _run(env)
    again = _run(env)
    assert again["gelu"][0] == 0  # compiled again: nothing was stored


def test_float32_kernel_list_matches_the_float32_math():
    """numba_backend keeps its own copy of the float32 op list (so that importing it imports
    no numba); it must name exactly the ops _numba_math32 implements."""
    from fusedact.backends import _numba_math32, numba_backend

    assert numba_backend._F32_KERNELS == set(_numba_math32.KERNELS)
    for name in _numba_math32.KERNELS:
        assert hasattr(_numba_math32, f"{name}_fwd") and hasattr(_numba_math32, f"{name}_der")
