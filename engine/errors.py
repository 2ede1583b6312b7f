"""Errors the user should read: one clear sentence saying what is wrong and what to do."""


class InspectError(Exception):
    """A problem with the user's input, files or setup (not a bug). The message is shown as is."""
