"""The one exception type of the data package."""


class DataError(Exception):
  """A dataset cannot be built or read: missing files, corrupt or inconsistent examples.

  The message is one line that names the file or example and says what to do.
  """
