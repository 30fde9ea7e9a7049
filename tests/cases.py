"""What the tests are driven by: the backends under test, the op cases from the catalogue,
and the one generator of adversarial arrays."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import fusedact
from fusedact import OPS, ELEMENTWISE_OPS
from fusedact._catalogue import EXTRA_PARAMS

HOST_BACKENDS = [b for b in ("numpy", "c", "numba") if b in fusedact.available_backends()]
# The c backend runs every test at each SIMD level its build has ("c" is the best this CPU
# supports): the same kernels are compiled three times and each must be right.
SIMD_VARIANTS = ["c@avx2", "c@baseline"] if "c" in HOST_BACKENDS else []
# The cuda backend takes NumPy arrays too (copied to the device and back), so every test runs
# on it as well: on a GPU, or on Numba's CUDA simulator, which conftest switches on when this
# machine has no NVIDIA device.
CUDA_BACKENDS = ["cuda"] if "cuda" in fusedact.available_backends() else []
FLOAT_DTYPES = (np.float16, np.float32, np.float64)


@contextlib.contextmanager
def variant_backend(variant):
    """The backend name of a test variant ("c", "numba", "c@avx2", ...): for c@LEVEL the C
    kernels run at LEVEL inside the block (the test skips where this CPU lacks it)."""
    name, _, level = variant.partition("@")
    if not level:
        yield name
        return
    c = fusedact._dispatch._load("c")[0]
    before = c.simd()
    if c.set_simd(level) != level:
        c.set_simd(before)
        pytest.skip(f"this CPU has no {level}")
    try:
        yield name
    finally:
        c.set_simd(before)


def param_sets(name):
    """The defaults, then each extra parameter set of the catalogue."""
    spec = OPS[name]
    sets = [spec.defaults()]
    for extra in EXTRA_PARAMS.get(name, ()):
        sets.append({**spec.defaults(), **extra})
    return sets


def elementwise_cases():
    """(op, params) pairs, with an id per pair."""
    cases = []
    for name in ELEMENTWISE_OPS:
        for i, p in enumerate(param_sets(name)):
            cases.append(pytest.param(name, p, id=f"{name}" + (f"-p{i}" if i else "")))
    return cases


def adversarial(dtype, domain=(-20.0, 20.0), dense=256, seed=0):
    """A 1-D array of the values that break activation kernels, for one dtype.

    NaN, +-inf, +-0, subnormals, the smallest and largest normals, +-1e4 (clipped to the
    dtype), the op's domain ends and a dense sweep across it, the saturation regions just
    past where exp over/underflows in float32 and float64, and standard normal x 3.
    """
    finfo = np.finfo(dtype)
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0,
                float(finfo.smallest_subnormal), -float(finfo.smallest_subnormal),
                float(finfo.tiny), -float(finfo.tiny), float(finfo.max), -float(finfo.max),
                1e4, -1e4, 1.0, -1.0, 3.0, -3.0, 6.0, 20.0, 20.5, -6.0,
                88.5, -88.5, 89.0, -104.0, 709.0, -709.0, 710.0, -745.0, 1e-8, -1e-8,
                1e-30, -1e-30]
    lo, hi = domain
    sweep = np.linspace(lo, hi, dense)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(dense) * 3.0
    with np.errstate(over="ignore"):
        values = np.concatenate([np.array(specials), sweep, noise]).astype(dtype)
    return values


def finite_sample(dtype, domain, n=2000, seed=1):
    lo, hi = domain
    rng = np.random.default_rng(seed)
    return np.concatenate([np.linspace(lo, hi, n // 2), rng.uniform(lo, hi, n // 2)]).astype(dtype)
