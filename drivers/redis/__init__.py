"""ringleader.drivers.redis: a Redis client on the calling worker's ring."""
