"""ringleader.drivers.postgres: a PostgreSQL client on the calling worker's ring."""
