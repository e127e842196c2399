"""The RViz2 layout for segmentation_node, generated for the topics a launch actually uses.

``rviz_config(image_topic, namespace)`` returns the ``.rviz`` YAML with three Image displays: the
camera (``image_topic`` as the launch remaps the node's ``image``), ``color_mask`` and
``overlay`` (published relative to the node, so in its namespace). ``config/vsda.rviz`` is this
function's output for the defaults (checked by test/test_rviz_config.py). No rclpy, no launch:
the launch file calls it and passes the written file to ``rviz2 -d``.

Fixed frame: the layout holds only Image displays, which show a picture in their own panel and
need no transform (rviz2 Humble and later: the Image display has no TF filter, ros2/rviz#788).
With the default TF transformer RViz still checks that the Fixed Frame exists in TF and, with no
TF publisher, reports "Fixed Frame [map] does not exist" in Global Status. The layout therefore
selects RViz's built-in identity transformer (``rviz_common/Identity``), for which every frame
exists, instead of asking the user to publish a static transform nobody needs.
"""

from __future__ import annotations

import yaml

#: the node name the launch file gives segmentation_node (for ``~`` topic names)
NODE_NAME = 'segmentation_node'
#: (display name, topic relative to the node, QoS reliability): the node's outputs are reliable
OUTPUT_DISPLAYS = (('Color mask', 'color_mask', 'Reliable'), ('Overlay', 'overlay', 'Reliable'))
HEADER = (
    '# RViz2 layout for vsda_ros segmentation_node: '
    'vsda_ros.ros.tools.rviz_config.rviz_config()\n'
    '# (launch/segment.launch.py writes one for its namespace and image_topic).\n'
)


def normalize_namespace(namespace: str) -> str:
    """``''``/``'/'`` → ``'/'``; ``'front'``, ``'/front/'`` → ``'/front'``.

    Raises ``ValueError`` for names with empty segments (``'a//b'``), ``~`` or whitespace.
    """
    ns = namespace.strip()
    parts = [p for p in ns.strip('/').split('/')] if ns.strip('/') else []
    if any(not p or '~' in p or any(c.isspace() for c in p) for p in parts):
        raise ValueError(f'bad namespace {namespace!r}')
    return '/' + '/'.join(parts)


def resolve_topic(name: str, namespace: str = '', node_name: str = NODE_NAME) -> str:
    """The absolute topic a name resolves to for a node in ``namespace`` (ROS 2 rules).

    ``/a/b`` stays as it is, ``a/b`` goes under the namespace, ``~`` / ``~/a`` under
    ``<namespace>/<node_name>``. Raises ``ValueError`` for an empty name or a bad namespace.
    """
    topic = name.strip()
    if not topic or topic == '/' or any(c.isspace() for c in topic):
        raise ValueError(f'bad topic name {name!r}')
    ns = normalize_namespace(namespace)
    if topic.startswith('/'):
        return topic.rstrip('/')
    if topic == '~' or topic.startswith('~/'):
        base = f'{ns.rstrip("/")}/{node_name}'
        return base + topic[1:].rstrip('/')
    return f'{ns.rstrip("/")}/{topic.rstrip("/")}'


def _image_display(name: str, topic: str, reliability: str) -> dict:
    return {
        'Class': 'rviz_default_plugins/Image',
        'Enabled': True,
        'Name': name,
        'Max Value': 1,
        'Median window': 5,
        'Min Value': 0,
        'Normalize Range': True,
        'Topic': {
            'Depth': 1 if reliability == 'Best Effort' else 5,
            'Durability Policy': 'Volatile',
            'History Policy': 'Keep Last',
            'Reliability Policy': reliability,
            'Value': topic,
        },
        'Value': True,
    }


def rviz_layout(image_topic: str = 'image', namespace: str = '') -> dict:
    """The layout as a dict (see :func:`rviz_config`)."""
    displays = [
        _image_display('Camera image', resolve_topic(image_topic, namespace), 'Best Effort')
    ]  # cameras publish sensor-data QoS
    displays += [
        _image_display(name, resolve_topic(rel, namespace), qos)
        for name, rel, qos in OUTPUT_DISPLAYS
    ]
    return {
        'Panels': [
            {
                'Class': 'rviz_common/Displays',
                'Name': 'Displays',
                'Property Tree Widget': {'Expanded': None},
            },
            {'Class': 'rviz_common/Views', 'Name': 'Views'},
        ],
        'Visualization Manager': {
            'Class': '',
            'Displays': displays,
            'Enabled': True,
            'Global Options': {
                'Background Color': '48; 48; 48',
                'Fixed Frame': 'map',  # exists for the identity transformer (module docstring)
                'Frame Rate': 30,
            },
            'Name': 'root',
            'Tools': [{'Class': 'rviz_default_plugins/Interact'}],
            'Transformation': {'Current': {'Class': 'rviz_common/Identity'}},
            'Value': True,
            'Views': {
                'Current': {'Class': 'rviz_default_plugins/Orbit', 'Name': 'Current View'},
                'Saved': None,
            },
        },
        'Window Geometry': {'Height': 900, 'Width': 1400},
    }


def rviz_config(image_topic: str = 'image', namespace: str = '') -> str:
    """The ``.rviz`` YAML for a node in ``namespace`` whose ``image`` is remapped to
    ``image_topic`` (relative names resolve in ``namespace``, like the launch's remapping).

    Raises ``ValueError`` for an empty or malformed topic name or namespace.
    """
    body = yaml.safe_dump(
        rviz_layout(image_topic, namespace), sort_keys=False, default_flow_style=False, width=99
    )
    return HEADER + body
