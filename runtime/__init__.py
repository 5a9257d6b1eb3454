"""ringleader.runtime (see the package docstring of ringleader)."""
