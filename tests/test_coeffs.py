"""The shared coefficient files are what tools/gen_coeffs.py generates."""

from __future__ import annotations

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_generated_coefficients_are_current():
    pytest.importorskip("mpmath")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_coeffs
    finally:
        sys.path.pop(0)
    assert gen_coeffs.main(check_only=True), "run: python tools/gen_coeffs.py"


def test_python_and_c_coefficients_agree():
    from fusedact import _coeffs

    header = (ROOT / "csrc" / "fa_coeffs.h").read_text()
    for value in (_coeffs.ERFC_CHEB_F64 + _coeffs.GELU_NUM + _coeffs.GELU_DEN
                  + _coeffs.EXP_F32_POLY + _coeffs.EXP_F64_POLY):
        assert repr(value) in header
