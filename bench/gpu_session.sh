#!/usr/bin/env bash
# Everything a GPU session checks, in one command (about 3 minutes on an H200, most of it
# compiling kernels): the GPU check table, then the cuda backend's tests on the real device.
# Runs from a source checkout without installing (the cuda backend needs no C extension);
# writes both outputs to ${OUT:-.}/gpu_check.txt and pytest.txt.
#
#   bash bench/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# numba-cuda 0.30.x overloads np.row_stack, which NumPy 2.5 removed: on such an image a
# sitecustomize puts the alias back for this run only (pyproject's cuda extra pins numpy<2.5).
if ! python3 -c "import numpy; numpy.row_stack" 2>/dev/null; then
    shim=$(mktemp -d)
    printf 'import numpy\nnumpy.row_stack = numpy.vstack\n' > "$shim/sitecustomize.py"
    export PYTHONPATH="$shim:$PYTHONPATH"
    echo "# NumPy $(python3 -c 'import numpy; print(numpy.__version__)') lacks row_stack: shimmed for numba-cuda"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout 330 python3 bench/gpu_check.py --repeats 10 2>&1 \
    | grep -v "NumbaPerformanceWarning\|warn(errors" | tee "$out/gpu_check.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider --benchmark-disable \
    -W ignore::DeprecationWarning tests/test_cuda.py 2>&1 | tail -15 | tee "$out/pytest.txt"
