"""Fixtures: the backend under test (each host backend, and the C kernels at every SIMD level)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import fusedact  # noqa: E402
from cases import HOST_BACKENDS, SIMD_VARIANTS  # noqa: E402


@pytest.fixture(params=HOST_BACKENDS + SIMD_VARIANTS)
def backend(request):
    """The backend name to pass as backend=...; for c@LEVEL, the C kernels forced to LEVEL."""
    name, _, level = request.param.partition("@")
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
