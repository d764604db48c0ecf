"""The job API: @job and its registry, dispatch, the job context, middleware and
controls, encryption, events.

Imports queue, never workflows, worker or master.
"""
