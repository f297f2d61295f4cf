"""How and when a reply goes out, for any wire format: faults, latency and pacing, reply shaping,
fake JSON from a schema, and the plain-ASGI exchange that providers answer through."""
