"""Reaching the services around a run: one way to open Redis for a Lua script,
and credentials inside URLs kept out of every message."""
