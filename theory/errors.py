"""The one exception the `smoe` CLI turns into a one-line message and exit code 2.

It subclasses ValueError (not smoe.errors.UserError) so that `theory` stays importable on its own.
"""


class InputError(ValueError):
    """Bad user input. The message is one line naming the field and the fix."""
