"""One exception type for every user-facing failure.

The CLI catches :class:`DeepcompError` and prints ``deepcomp: <message>`` on one
line with a non-zero exit status, so every message must already name the file
(or dataset, tool, board) and the problem.
"""

from __future__ import annotations


class DeepcompError(Exception):
    """A problem the user can fix: bad file, missing dataset, unsupported layer."""


class FormatError(DeepcompError):
    """A container (``.dcz`` or ROM image) that cannot be read: truncated, corrupt, foreign."""
