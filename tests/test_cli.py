"""python -m fusedact info."""

from __future__ import annotations

import subprocess
import sys


def test_info_lists_every_backend_and_the_choice():
    r = subprocess.run([sys.executable, "-m", "fusedact", "info"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for name in ("c", "numba", "cuda", "numpy"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), (name, out)
    assert "selected:" in out and "numpy" in out and "fusedact 0." in out
    assert "cpus usable:" in out
