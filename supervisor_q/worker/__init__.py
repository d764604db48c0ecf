"""One worker process: the loop, running one job and settling its outcome,
timeouts, memory checks, the report pipe to the master, sync mode.

Imports workflows, jobs and queue; never the master.
"""
