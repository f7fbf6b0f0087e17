"""The one error type of the converter: its message is a single line meant for users."""


class ConversionError(Exception):
  """A checkpoint that cannot be read or does not fit the requested model.

  The message is one line that names the file, the first offending keys and what to do;
  the command line prints it without a traceback and exits with status 2.
  """
