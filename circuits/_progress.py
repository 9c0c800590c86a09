"""Progress bars for long work, drawn by tqdm only where someone watches (internal).

``progress=True`` draws on stderr when it is a terminal and stays quiet in a log or a pipe; a text
stream draws there; ``False`` draws nothing. tqdm is imported only when a bar is drawn, so
``import circuits`` does not load it.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from .errors import CircuitsError

__all__ = ["Progress", "progress_stream"]


class Progress:
    """A tqdm progress bar on ``stream``, or nothing when ``stream`` is ``None``."""

    def __init__(self, total: int, stream: IO[str] | None, label: str, unit: str) -> None:
        self.bar: Any = None
        if stream is not None:
            from tqdm import tqdm  # type: ignore[import-untyped]  # only when a bar is drawn

            self.bar = tqdm(total=total, desc=label, unit=unit, file=stream, mininterval=0.2)

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_stream(
    progress: bool | IO[str], error: type[CircuitsError] = CircuitsError
) -> IO[str] | None:
    """Where a bar is drawn: stderr for ``True`` when it is a terminal (never into a log or a
    pipe), the stream given, or nowhere; anything else is ``error``."""
    if progress is True:
        return sys.stderr if sys.stderr is not None and sys.stderr.isatty() else None
    if progress is False or progress is None:
        return None
    if not callable(getattr(progress, "write", None)):
        raise error(f"progress: expected True, False or a text stream, got {progress!r}")
    return progress
