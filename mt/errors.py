"""The base of every error a user can cause and fix: the CLI reports it as one line, no traceback."""


class MTError(Exception):
    """An error whose message names the file, line, key or run concerned and what to do."""
