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


class ParameterError(InputError):
    """A bad value of a named parameter (``tile``, ``overlap``, ``batch``, ``device``...).

    The core names the parameter as the Python API does; each face words it in its own terms
    with :meth:`worded`: the CLI as its flag (``--tile 8: must be at least 16 pixels``), a data
    or suite file as its key, QGIS as the dialog's label.
    """

    def __init__(self, parameter: str, value: object, requirement: str,
                 path: object | None = None):
        self.parameter, self.value, self.requirement = parameter, value, requirement
        super().__init__(self._text(parameter), path)

    def _text(self, name: str) -> str:
        shown = name if self.value is None else f"{name} {self.value}"
        return f"{shown}: {self.requirement}"

    def worded(self, name: str) -> str:
        """The message with the parameter called ``name`` (``value`` None: not shown)."""
        prefix = f"{self.path}: " if self.path is not None else ""
        return one_line(prefix + self._text(name))


def one_line(error: object) -> str:
    """An error (or any text) as one line, runs of whitespace as one space; an exception with
    no message gives its type's name."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        return type(error).__name__
    return text
