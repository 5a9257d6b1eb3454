"""ringleader.drivers (see the package docstring of ringleader)."""
