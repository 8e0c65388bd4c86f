"""Typed errors. The library raises these; only the CLI and the MCP server turn them into
one-line messages. Every message says what to do next."""


class CodelsrError(Exception):
    """Base class of every error codelsr raises on purpose."""


class NotARepositoryError(CodelsrError):
    """The path does not exist or is not a directory."""


class NotIndexedError(CodelsrError):
    """No index exists for this repository yet."""


class EncoderMismatchError(CodelsrError):
    """The index was built with a different encoder than the one asked for."""


class UnknownEncoderError(CodelsrError):
    """The encoder name is not in the registry and is not a loadable checkpoint."""


class EncoderUnavailableError(CodelsrError):
    """The encoder needs something that is not installed or cannot be loaded."""


class InvalidQueryError(CodelsrError):
    """The query is empty, too long, or a search parameter is out of range."""


class CorruptIndexError(CodelsrError):
    """An index file is missing, truncated or unreadable."""


class IndexBusyError(CodelsrError):
    """Another process holds the write lock of this index."""


class PathNotAllowedError(CodelsrError):
    """A path lies outside the roots the server may read."""
