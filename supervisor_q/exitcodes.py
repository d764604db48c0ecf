"""Worker exit codes. The master replaces a child that exits with an EXPECTED code at
once and never counts it as a crash (a recycling exit is not a failure)."""

OK = 0  # stopped on request (TERM/INT, --once, --stop-when-empty, pause-free shutdown)
ERROR = 1  # unexpected error in the worker itself
BOOT_ERROR = 3  # a module in `import:` failed to import: retrying at once cannot help
MAX_JOBS = 10  # --max-jobs reached
MAX_TIME = 11  # --max-time reached
MEMORY = 12  # --memory (RSS) exceeded after a job
RESTART = 13  # the deploy restart signal (restart-workers) is newer than the worker
TIMEOUT = 14  # a job hit its timeout; the interpreter may be in a bad state, start fresh
FENCED = 15  # the master's fleet lease ran out mid-job (worker/fence.py): the job was stopped

EXPECTED = frozenset({OK, MAX_JOBS, MAX_TIME, MEMORY, RESTART, TIMEOUT, FENCED})

DESCRIPTIONS = {
    OK: "stopped on request",
    ERROR: "unexpected error",
    BOOT_ERROR: "could not import the program's modules",
    MAX_JOBS: "max_jobs reached",
    MAX_TIME: "max_time reached",
    MEMORY: "memory limit exceeded",
    RESTART: "restart signal",
    TIMEOUT: "job timed out",
    FENCED: "fenced: the master's fleet lease ran out mid-job",
}
