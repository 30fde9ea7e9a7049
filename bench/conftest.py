"""pytest-benchmark suite settings: the package's contenders table drives every benchmark."""
