"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class DeepfakeError(Exception):
    """A user-facing error: bad input, missing weights, mismatched artifacts.

    The message is a complete sentence meant for the terminal; `exit_code` is what the CLI returns.
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class WeightsMissingError(DeepfakeError):
    """Pretrained weights are not on this machine and cannot be fetched."""
