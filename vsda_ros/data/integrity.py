"""Damaged and truncated inputs: one policy for every frame source, and the read accounting.

A source that knows how many frames it should give (a video's container frame count, a bag's
message count) checks at the end of a full pass whether it gave them, and a bag source also
checks its storage (chunk checksums, sqlite structure) before it yields anything. What it finds
goes through :func:`report_read`:

* by default an incomplete or damaged input raises :class:`IncompleteInputError` (a
  ``ValueError``, so the CLI prints one ``vsda <cmd>: error: …`` line and exits 2);
* inside ``with reading(allow_incomplete=True)`` (``--allow-truncated``) it logs one warning,
  and the caller finds ``frames_expected`` / ``frames_read`` / ``problems`` in the
  :class:`ReadLog` to put in its report.

A pass that the caller stops early (``--max-frames``) is never checked: the source does not know
whether the rest was readable, and claims nothing.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

log = logging.getLogger(__name__)


class IncompleteInputError(ValueError):
    """The input is damaged or ended before the frames it announced; ``str()`` is one line."""


@dataclass
class ReadStats:
    """What one full pass over a source read.

    ``frames_expected`` is what the container announced (``None``: it does not say);
    ``frames_read`` the frames (or, for a bag, image messages) actually read from storage;
    ``problems`` one line per damage found (bad chunks, storage errors); ``tolerance`` how many
    frames fewer than announced still count as complete (containers whose count is an estimate
    from duration × rate).
    """

    source: str
    kind: str
    frames_expected: int | None
    frames_read: int
    problems: list[str] = field(default_factory=list)
    tolerance: int = 0

    @property
    def short(self) -> bool:
        """Fewer frames read than announced (beyond the tolerance)."""
        return (
            self.frames_expected is not None
            and self.frames_read < self.frames_expected - self.tolerance
        )

    @property
    def complete(self) -> bool:
        return not self.problems and not self.short

    def as_dict(self) -> dict:
        """``{'frames_expected', 'frames_read', 'complete', 'problems'}`` for JSON reports."""
        return {
            'frames_expected': self.frames_expected,
            'frames_read': self.frames_read,
            'complete': self.complete,
            'problems': list(self.problems),
        }

    def describe(self) -> str:
        """One line: what is wrong with the input (empty when complete)."""
        parts = list(self.problems)
        if self.short:
            parts.append(
                f'read {self.frames_read} of the {self.frames_expected} frames it announces'
            )
        if not parts:
            return ''
        state = 'damaged' if self.problems else 'truncated'
        return f'{self.kind} {self.source} is {state}: ' + '; '.join(parts)


@dataclass
class ReadLog:
    """The passes reported inside one :func:`reading` block."""

    allow_incomplete: bool = False
    stats: list[ReadStats] = field(default_factory=list)

    @property
    def last(self) -> ReadStats | None:
        return self.stats[-1] if self.stats else None


_CURRENT: ContextVar[ReadLog | None] = ContextVar('vsda_read_log', default=None)


@contextmanager
def reading(allow_incomplete: bool = False) -> Iterator[ReadLog]:
    """Collect the :class:`ReadStats` of the sources read inside the block; with
    ``allow_incomplete`` incomplete inputs only warn (see the module docstring)."""
    read_log = ReadLog(allow_incomplete)
    token = _CURRENT.set(read_log)
    try:
        yield read_log
    finally:
        _CURRENT.reset(token)


def allow_incomplete() -> bool:
    """Whether the active :func:`reading` block accepts incomplete inputs (``False`` outside)."""
    current = _CURRENT.get()
    return current is not None and current.allow_incomplete


#: how to get past an incomplete input, for the error line.
ALLOW_HINT = 'with --allow-truncated, vsda segment and vsda eval use what can be read'


def report_read(stats: ReadStats, hint: str = ALLOW_HINT) -> None:
    """Record a finished pass; an incomplete one warns (allowed) or raises.

    Raises:
        IncompleteInputError: ``stats`` is incomplete and incomplete inputs are not allowed.
    """
    current = _CURRENT.get()
    if current is not None:
        current.stats.append(stats)
    if stats.complete:
        return
    if current is not None and current.allow_incomplete:
        log.warning('%s (accepted: --allow-truncated)', stats.describe())
        return
    raise IncompleteInputError(f'{stats.describe()}; {hint}')
