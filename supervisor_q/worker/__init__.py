"""One worker process: boot, the loop, running one job and settling its outcome,
timeouts, memory checks, the report pipe to the master, sync mode, and the handback
that settles a job whose worker died (for the master and the `work` guard).

Imports workflows, jobs and queue; never the master.
"""
