"""Errors that mean "bad input or bad usage" (exit status 2), as opposed to a failure of the work."""


class InputError(ValueError):
    """Bad input: the message is one line that names the file and what is wrong.

    The CLI turns it into exit status 2; any other exception is a failure of the work (exit 1).
    """

    def __init__(self, message: str, path: object | None = None):
        if path is not None and str(path) not in message:
            message = f"{path}: {message}"
        super().__init__(one_line(message))
        self.path = path


def one_line(error: object) -> str:
    """An error (or any text) as one line, runs of whitespace as one space; an exception with
    no message gives its type's name."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        return type(error).__name__
    return text
