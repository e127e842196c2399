"""The topics and messages of ``vsda replay`` (:mod:`vsda_ros.ros.tools.replay`): ``--remap``
parsing, the check that every published name is a valid ROS 2 topic name (with a suggested
valid one), the rclpy message class of a bag's message type, and header restamping
(``--restamp``). rclpy is imported inside the functions that need it.
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable


def _suggest_topic(topic: str) -> str:
    """A valid ROS 2 name close to ``topic``: other characters → ``_``, a token that starts
    with a digit gets a leading ``_`` (``/2cam/image`` → ``/_2cam/image``)."""
    tokens = []
    for token in topic.strip('/').split('/'):
        token = ''.join(c if c.isascii() and (c.isalnum() or c == '_') else '_' for c in token)
        tokens.append('_' + token if token[:1].isdigit() else token or '_')
    return '/' + '/'.join(tokens)


def check_topic_names(chosen: list[str], renames: dict[str, str]) -> None:
    """Every name the replay would publish on is a valid ROS 2 topic name.

    Raises:
        ValueError: one line naming the topic, why it is invalid, and the way out
            (``--remap OLD:=NEW`` with a suggested name, or ``--topics`` to leave it out).
    """
    from rclpy.validate_topic_name import InvalidTopicNameException, validate_topic_name

    for topic in chosen:
        name = renames.get(topic, topic)
        try:
            validate_topic_name(name)
        except InvalidTopicNameException as exc:
            why = str(exc).splitlines()[0].replace('Invalid topic name: ', '')
            if topic in renames:
                raise ValueError(
                    f'--remap {topic}:={name}: {name!r} is not a valid ROS 2 topic name ({why})'
                ) from None
            others = [t for t in chosen if t != topic]
            leave_out = (
                f', or replay only the others with --topics {" ".join(others)}' if others else ''
            )
            raise ValueError(
                f'bag topic {topic!r} is not a valid ROS 2 topic name ({why}); '
                f'publish it under a valid name with --remap '
                f'{topic}:={_suggest_topic(topic)}{leave_out}'
            ) from None


def message_class(msgtype: str) -> type:
    """``'sensor_msgs/msg/Image'`` → the rclpy message class ``sensor_msgs.msg.Image``.

    Raises:
        ValueError: the package is not installed or has no such message.
    """
    pkg, kind, name = (msgtype.split('/') + ['', ''])[:3]
    try:
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(
            f'message type {msgtype} is not available to rclpy here (install the {pkg} package)'
        ) from None


def parse_remaps(remaps: Iterable[str] | dict[str, str] | None) -> dict[str, str]:
    """``['OLD:=NEW', …]`` (or a dict) → ``{OLD: NEW}``."""
    if remaps is None:
        return {}
    if isinstance(remaps, dict):
        return dict(remaps)
    out = {}
    for item in remaps:
        old, sep, new = item.partition(':=')
        if not sep or not old or not new:
            raise ValueError(f'remap {item!r} is not OLD:=NEW')
        out[old] = new
    return out


class Restamper:
    """Rewrites header.stamp to now; images and labels with the same recorded stamp get the
    same new stamp."""

    def __init__(self, node: Any) -> None:
        from rclpy.serialization import deserialize_message, serialize_message

        self._de, self._ser = deserialize_message, serialize_message
        self._clock = node.get_clock()
        self._map: dict[tuple[int, int], Any] = {}

    def clear(self) -> None:
        self._map.clear()

    def __call__(self, raw: bytes, cls: type) -> bytes:
        msg: Any = self._de(raw, cls)
        header = getattr(msg, 'header', None)
        if header is None:
            return raw
        key = (header.stamp.sec, header.stamp.nanosec)
        stamp = self._map.get(key)
        if stamp is None:
            stamp = self._clock.now().to_msg()
            self._map[key] = stamp
            if len(self._map) > 256:
                self._map.pop(next(iter(self._map)))
        header.stamp = stamp
        return self._ser(msg)
