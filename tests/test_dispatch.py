"""Backend selection: keyword > use_backend() > FUSEDACT_BACKEND > auto."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fusedact
from fusedact import BackendUnavailable


def _run(code, **env):
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full,
                          timeout=120)


def test_available_and_status():
    assert "numpy" in fusedact.available_backends()
    status = fusedact.backend_status()
    assert set(status) >= {"c", "numba", "cuda", "numpy"}
    for name, (ok, reason) in status.items():
        assert isinstance(ok, bool) and reason, name


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid names: auto, c, numba, cuda, numpy"):
        fusedact.relu([1.0], backend="fortran")
    with pytest.raises(ValueError, match="valid names"):
        with fusedact.use_backend("fortran"):
            pass


def test_unavailable_backend_by_name_raises_with_reason():
    unavailable = [n for n, (ok, _) in fusedact.backend_status().items() if not ok]
    if not unavailable:
        pytest.skip("every backend is available in this environment")
    name = unavailable[0]
    reason = fusedact.backend_status()[name][1]
    with pytest.raises(BackendUnavailable, match=reason.split("(")[0].strip()[:30]):
        fusedact.relu([1.0], backend=name)
    with pytest.raises(BackendUnavailable):
        with fusedact.use_backend(name):
            pass


def _numpy_calls(monkeypatch):
    from fusedact.backends.numpy_backend import NumpyBackend

    calls = []
    original = NumpyBackend.elementwise

    def spy(self, *args):
        calls.append(threading.get_ident())
        return original(self, *args)

    monkeypatch.setattr(NumpyBackend, "elementwise", spy)
    return calls


def test_precedence_keyword_over_context(monkeypatch):
    calls = _numpy_calls(monkeypatch)
    assert fusedact.get_backend() in ("auto", os.environ.get("FUSEDACT_BACKEND", "auto"))
    with fusedact.use_backend("numpy"):
        assert fusedact.get_backend() == "numpy"
        fusedact.relu(np.ones(3))
        assert len(calls) == 1
        others = [b for b in fusedact.available_backends() if b != "numpy"]
        for other in others:
            fusedact.relu(np.ones(3), backend=other)
        assert len(calls) == 1  # the keyword won
        with fusedact.use_backend("auto"):
            assert fusedact.get_backend() == "auto"
        assert fusedact.get_backend() == "numpy"


def test_context_manager_is_thread_local():
    seen = {}
    barrier = threading.Barrier(2)

    def inside():
        with fusedact.use_backend("numpy"):
            barrier.wait()
            seen["inside"] = fusedact.get_backend()
            barrier.wait()

    def outside():
        barrier.wait()
        seen["outside"] = fusedact.get_backend()
        barrier.wait()

    threads = [threading.Thread(target=inside), threading.Thread(target=outside)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["inside"] == "numpy"
    assert seen["outside"] == fusedact._dispatch.ENV_BACKEND


def test_env_var_selects_and_keyword_overrides():
    code = ("import fusedact, numpy as np; print(fusedact.get_backend());"
            "print(float(fusedact.relu(np.float64(-1))))")
    r = _run(code, FUSEDACT_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "numpy"


def test_env_var_choice_is_remembered_per_op_and_outranked_as_before(monkeypatch):
    """Under FUSEDACT_BACKEND the dispatcher checks and loads the named backend once per op
    (as auto does), and the keyword and use_backend() still outrank it; re-registering a
    backend forgets the choice."""
    from fusedact import _dispatch

    monkeypatch.setattr(_dispatch, "ENV_BACKEND", "numpy")
    x = np.linspace(-2, 2, 9)
    numpy_backend = _dispatch.resolve(None, "elu", x)
    assert type(numpy_backend).__name__ == "NumpyBackend"
    assert _dispatch._env_cache[("numpy", "elu")] is numpy_backend
    assert _dispatch.resolve(None, "elu", x) is numpy_backend
    for other in fusedact.available_backends():
        if other in ("numpy", "cuda"):
            continue
        assert _dispatch.resolve(other, "elu", x) is not numpy_backend
        with fusedact.use_backend(other):
            assert _dispatch.resolve(None, "elu", x) is not numpy_backend
            np.testing.assert_allclose(fusedact.elu(x), np.where(x > 0, x, np.expm1(x)))
        monkeypatch.setattr(_dispatch, "ENV_BACKEND", _dispatch.AUTO)
        assert _dispatch.resolve(None, "elu", x) is not numpy_backend  # auto's own choice
        monkeypatch.setattr(_dispatch, "ENV_BACKEND", "numpy")
    _dispatch.register_backend("numpy", "fusedact.backends.numpy_backend", "NumpyBackend")
    assert ("numpy", "elu") not in _dispatch._env_cache
    assert type(_dispatch.resolve(None, "elu", x)).__name__ == "NumpyBackend"


def test_env_var_unknown_value_errors_at_first_use():
    r = _run("import fusedact; fusedact.relu([1.0])", FUSEDACT_BACKEND="gpu-magic")
    assert r.returncode != 0
    assert "unknown backend 'gpu-magic' (FUSEDACT_BACKEND)" in r.stderr
    assert "valid names: auto, c, numba, cuda, numpy" in r.stderr
    # import alone works, and info reports the problem.
    r = _run("import fusedact", FUSEDACT_BACKEND="gpu-magic")
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "fusedact", "info"], capture_output=True, text=True,
                       env={**os.environ, "FUSEDACT_BACKEND": "gpu-magic"}, timeout=120)
    assert r.returncode == 0 and "unknown backend 'gpu-magic'" in r.stdout


def test_env_var_unavailable_backend_raises_at_use():
    unavailable = [n for n, (ok, _) in fusedact.backend_status().items() if not ok]
    if not unavailable:
        pytest.skip("every backend is available in this environment")
    r = _run("import fusedact; fusedact.relu([1.0])", FUSEDACT_BACKEND=unavailable[0])
    assert r.returncode != 0 and "is not available" in r.stderr


def test_auto_prefers_compiled_host_backends():
    chosen = fusedact._dispatch.auto_host_choice("relu")
    available = fusedact.available_backends()
    for better in ("c", "numba"):
        if better in available and fusedact._dispatch._load(better)[0].has_kernel("relu"):
            assert chosen == better
            break
    else:
        assert chosen == "numpy"


def test_device_arrays_without_cuda_get_a_clear_error():
    """No GPU: BackendUnavailable; the simulator: a TypeError (it reads only its own arrays)."""
    cuda = fusedact._dispatch._load("cuda")[0]
    if fusedact._dispatch.backend_status()["cuda"][0] and not cuda.simulator:
        pytest.skip("a real GPU would be handed the fake pointer")

    class FakeDevice:
        __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False),
                                    "version": 3}

    with pytest.raises((TypeError, BackendUnavailable), match="cuda|CUDA"):
        fusedact.relu(FakeDevice())
