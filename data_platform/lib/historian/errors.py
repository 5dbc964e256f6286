"""The failure family of historian writes."""


class HistorianWriteError(Exception):
    """A window could not be written; nothing of it was committed."""
