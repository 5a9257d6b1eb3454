"""ringleader.supervisor (see the package docstring of ringleader)."""
