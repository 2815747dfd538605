"""The one exception type the science raises for inputs it cannot use.

Anything else escaping these functions is a bug. Adapters (Triton models, CLIs) turn this
error into ``INVALID_ARG`` or exit code 2 with its message, which always names the problem.
"""


class InputValidationError(ValueError):
    """The input is not something the method can work on; the message says why."""
