"""The one exception type the command line turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a message that says what and where, never a traceback.

    The library returns typed results across its API; `UserError` is raised only at the edges
    (reading files, parsing workflows a user named, command-line arguments).
    """

    def __init__(self, message: str, *, where: str | None = None):
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
