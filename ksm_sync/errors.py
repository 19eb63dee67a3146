"""The two ways a run can fail before any mirror is considered, and their exit statuses."""


class UsageError(Exception):
    """Bad input: a flag, a variable, a file it names. Exit status 2, nothing touched."""

    exit_code = 2


class Unavailable(Exception):
    """The pass could not run: a cluster, a CA URL, a namespace. Exit status 3."""

    exit_code = 3
