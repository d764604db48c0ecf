"""The fleet: every master's heartbeat in Redis, `status --all`, and the hand-back of a
dead master's jobs. Between worker and master: the master and the CLI import it; it
imports queue, jobs and config only."""
