"""The job API: @job, its registry and signatures, dispatch, the job context, unique
locks, middleware and controls, encryption, events.

Imports queue and the top-level helpers, never workflows, worker or master (sync mode
plugs in from the worker: dispatching.use_inline).
"""
