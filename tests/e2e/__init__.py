"""End-to-end tests: the real pipeline (Redis, Celery workers and beat, nftables in namespaces)."""
