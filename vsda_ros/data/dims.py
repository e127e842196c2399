"""Image size of a message before decoding it: the node's memory guard.

A raw ``sensor_msgs/Image`` carries its size in ``width``/``height``; a ``CompressedImage``
carries it in the JPEG/PNG header, which Pillow reads without decoding the pixels. Knowing the
size first lets the node refuse a frame that would need gigabytes to decode and post-process
(an 8K JPEG is 5 MB compressed and 100 MB decoded). No rclpy here: works on rosbags messages too.
"""

from __future__ import annotations

import io
import warnings
from typing import Any


def message_pixels(msg: Any) -> int | None:
    """Width × height of an ``Image`` or ``CompressedImage``-like message, without decoding.

    Returns ``None`` when a compressed image's header cannot be read (the decoder then reports
    what is wrong with it). A header that claims more pixels than Pillow's decompression-bomb
    limit is reported as that claim (it is refused as too large, never decoded).
    """
    if hasattr(msg, 'width') and hasattr(msg, 'height'):
        return int(msg.width) * int(msg.height)
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(bytes(msg.data))) as img:  # header only
                w, h = img.size
    except PILImage.DecompressionBombError as exc:
        # the message names the claimed pixel count: "Image size (N pixels) exceeds ..."
        digits = ''.join(c if c.isdigit() else ' ' for c in str(exc)).split()
        # (the limit is an int here: a None limit raises no DecompressionBombError)
        return int(digits[0]) if digits else (PILImage.MAX_IMAGE_PIXELS or 0) * 2
    except Exception:  # noqa: BLE001 - unreadable header: let the real decoder say why
        return None
    return int(w) * int(h)
