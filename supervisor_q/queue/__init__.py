"""Redis: key layout, Lua scripts, the RedisQueue backend, payloads, the restart
signal, queue thresholds and the embedded server.

Imports only the top-level helpers (never config or ctl).
"""
