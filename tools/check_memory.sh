#!/usr/bin/env bash
# Build the C extension with AddressSanitizer + UndefinedBehaviorSanitizer into a scratch
# virtual environment and run the C backend's tests under it (every SIMD level, every op,
# sizes 0..67, strided/aliased/threaded calls). Any out-of-bounds access, use after free or
# undefined behaviour aborts the run with a report.
#
#   bash tools/check_memory.sh            # uses python3; takes a few minutes
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/tmp/fusedact-asan-venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet numpy scipy cffi "setuptools>=77" wheel pytest pytest-benchmark mpmath
rm -rf build
FUSEDACT_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g" \
LDFLAGS="-fsanitize=address,undefined" \
    "$VENV/bin/pip" install --quiet --no-build-isolation --force-reinstall --no-deps .
LIBASAN=$(gcc -print-file-name=libasan.so)
LIBUBSAN=$(gcc -print-file-name=libubsan.so)
# Reports go to files: pytest captures stderr, and an aborted run loses what it captured.
REPORTS=$(mktemp -d /tmp/fusedact-sanitizer.XXXXXX)
cd /tmp  # import the installed (sanitised) package, not the source tree
status=0
LD_PRELOAD="$LIBASAN $LIBUBSAN" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path="$REPORTS/asan" \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path="$REPORTS/ubsan" \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$OLDPWD/tests" \
    -k "c and not torch" -W ignore::pytest.PytestUnraisableExceptionWarning "$@" || status=$?
if compgen -G "$REPORTS/*" > /dev/null; then
    echo "sanitizer reports ($REPORTS):"
    cat "$REPORTS"/*
    status=${status/#0/1}
fi
exit "$status"
