"""Redis: key layout, Lua scripts, the RedisQueue backend, payloads, the restart
signal, queue thresholds and the embedded server.

Layer 1: imports only config/ctl and the top-level helpers.
"""
