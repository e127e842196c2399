"""Per-camera stream continuity: when must a temporal buffer be reset?

A frame buffer (previous scores, keyframe features) is only meaningful for consecutive frames of
one camera in one format. :class:`StreamGuard` watches (stamp, size, format) and says why the
stream broke: the resolution changed, the encoding changed (an IR night mode switching rgb8 →
mono8, a compressed stream changing its ``format``), the stamp went backwards (a bag loop, a
clock reset), or it jumped forward by more than ``max_gap_s`` (dropped connection, paused
replay).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StreamGuard:
    """Checks each new frame against the previous one of the same camera.

    Attributes:
        max_gap_s: a forward stamp jump above this resets the stream.
    """

    max_gap_s: float = 1.0
    last_stamp: float | None = None
    last_size: tuple[int, int] | None = None
    last_fmt: str | None = None
    resets: int = 0

    def check(self, stamp: float, size: tuple[int, int], fmt: str | None = None) -> str | None:
        """Record the frame; return why the stream broke (buffers must be reset), or ``None``.

        The first frame of a stream is not a break. ``size`` is (width, height); ``fmt`` is the
        frame's encoding (``Image.encoding``, ``CompressedImage.format``): ``None`` = unknown,
        never compared (callers that do not know it keep the old behaviour). Never raises.
        """
        reason = None
        if self.last_size is not None and size != self.last_size:
            reason = (
                f'resolution changed from {self.last_size[0]}x{self.last_size[1]} to '
                f'{size[0]}x{size[1]}'
            )
        elif fmt is not None and self.last_fmt is not None and fmt != self.last_fmt:
            reason = f'encoding {self.last_fmt} -> {fmt}'
        elif self.last_stamp is not None and stamp < self.last_stamp:
            reason = f'stamp went backwards by {self.last_stamp - stamp:.3f} s'
        elif self.last_stamp is not None and stamp - self.last_stamp > self.max_gap_s:
            reason = (
                f'stamp jumped forward by {stamp - self.last_stamp:.3f} s (> {self.max_gap_s} s)'
            )
        if reason is not None:
            self.resets += 1
        self.last_stamp, self.last_size = stamp, size
        if fmt is not None:
            self.last_fmt = fmt
        return reason
