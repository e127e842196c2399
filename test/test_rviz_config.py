"""The generated RViz layout shows the topics the launch really uses (no rclpy, no rviz2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vsda_ros.ros.tools.rviz_config import (
    normalize_namespace,
    resolve_topic,
    rviz_config,
    rviz_layout,
)

ROOT = Path(__file__).resolve().parent.parent


def _topics(text: str) -> dict[str, str]:
    layout = yaml.safe_load(text)
    return {d['Name']: d['Topic']['Value'] for d in layout['Visualization Manager']['Displays']}


@pytest.mark.parametrize(
    'image_topic, namespace, camera, outputs',
    [
        ('image', '', '/image', '/'),
        ('image', 'front', '/front/image', '/front/'),
        ('image', '/front', '/front/image', '/front/'),
        ('image', '/front/', '/front/image', '/front/'),
        ('image', 'robot/front', '/robot/front/image', '/robot/front/'),
        ('/camera/image_raw', '', '/camera/image_raw', '/'),
        ('/camera/image_raw', 'front', '/camera/image_raw', '/front/'),
        ('camera/image_raw', '/front', '/front/camera/image_raw', '/front/'),
        ('~/image', 'front', '/front/segmentation_node/image', '/front/'),
    ],
)
def test_displays_follow_image_topic_and_namespace(image_topic, namespace, camera, outputs):
    topics = _topics(rviz_config(image_topic, namespace))
    assert topics == {
        'Camera image': camera,
        'Color mask': outputs + 'color_mask',
        'Overlay': outputs + 'overlay',
    }


@pytest.mark.parametrize(
    'namespace, expected',
    [('', '/'), ('/', '/'), ('front', '/front'), ('/front/', '/front'), (' a/b ', '/a/b')],
)
def test_normalize_namespace(namespace, expected):
    assert normalize_namespace(namespace) == expected


@pytest.mark.parametrize(
    'name, namespace', [('', ''), ('/', 'front'), ('a b', ''), ('image', 'a//b'), ('image', '~')]
)
def test_bad_names_raise(name, namespace):
    with pytest.raises(ValueError):
        resolve_topic(name, namespace)


def test_image_only_layout_needs_no_tf():
    manager = rviz_layout()['Visualization Manager']
    assert {d['Class'] for d in manager['Displays']} == {'rviz_default_plugins/Image'}
    # the identity transformer: the Fixed Frame always exists, no TF publisher needed
    assert manager['Transformation'] == {'Current': {'Class': 'rviz_common/Identity'}}
    assert manager['Global Options']['Fixed Frame']


def test_camera_display_subscribes_best_effort_outputs_reliable():
    qos = {
        d['Name']: d['Topic']['Reliability Policy']
        for d in rviz_layout()['Visualization Manager']['Displays']
    }
    assert qos == {'Camera image': 'Best Effort', 'Color mask': 'Reliable', 'Overlay': 'Reliable'}


def test_packaged_layout_is_the_generated_default():
    assert (ROOT / 'config' / 'vsda.rviz').read_text() == rviz_config()
