"""Backends: each module holds one class implementing ``fusedact.backends._base.Backend``."""
