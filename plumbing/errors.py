"""The one exception type for mistakes a user can fix (bad key, missing file, bad value).

Command-line entry points catch it and print its message as one line with exit code 2;
anything else is a bug and keeps its traceback.
"""


class UsageError(Exception):
    """A user mistake: the message alone must tell them what to change."""
