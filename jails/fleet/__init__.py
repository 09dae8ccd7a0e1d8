"""The fleet: one panel, many servers. Hosts join and leave here (hosts), each with a PostgreSQL role
(postgres) and a Redis user (redis_acl) of its own; docs/fleet.md says what each credential allows."""
