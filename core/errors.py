"""Errors that mean "bad input or bad usage" (exit status 2), as opposed to a failure of the work."""


class InputError(ValueError):
    """Bad input: the message is one line that names the file and what is wrong.

    The CLI turns it into exit status 2; any other exception is a failure of the work (exit 1).
    """

    def __init__(self, message: str, path: object | None = None):
        if path is not None and str(path) not in message:
            message = f"{path}: {message}"
        super().__init__(" ".join(str(message).split()))
        self.path = path
