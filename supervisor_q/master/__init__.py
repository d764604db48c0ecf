"""The master: arbiter loop, pools, processes, spawning, hand-back of jobs of dead
children, wake-ups, schedules and autoscale, control command handlers,
systemd.

Imports worker (to fork it) and everything below; never the CLI.
"""
