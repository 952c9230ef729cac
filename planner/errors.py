"""Error types that the CLI turns into a clear message and an exit code (never a traceback)."""


class PlannerError(Exception):
    """A failure caused by the input (bad file, unsupported op, network that does not fit). Exit 1."""

    exit_code = 1


class UsageError(PlannerError):
    """A wrong invocation (bad option value, missing argument). Exit 2."""

    exit_code = 2
