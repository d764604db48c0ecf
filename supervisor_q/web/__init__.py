"""The web dashboard: a Starlette app over Redis (fleet, queues, failed jobs, batches).

Ranked just below the CLI: it reads the fleet registry and the queue layer, and reaches
masters only through Redis (pauses, the per-master command inbox), never their sockets.
"""
