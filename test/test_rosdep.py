"""Every package.xml key resolves with rosdep for ROS 2 Kilted on Ubuntu Noble.

``rosdep install --from-paths src --ignore-src -y`` stops at the first key without a rule, so a
single unknown key (``python3-onnx-pip`` …) breaks the whole install of a workspace. The rules are
read from the rosdep database snapshot in ``../shared/ros2-src/rosdep`` (``base.yaml``,
``python.yaml``, ``kilted-distribution.yaml`` of ros/rosdistro): a ROS package key resolves when
the Kilted distribution releases that package; a system key when ``base.yaml``/``python.yaml``
give it a rule for ``ubuntu`` usable on ``noble``. What has no rule is pip-installed from
``requirements-ros.txt`` (docs/install.md); ``test_package_deps.py`` checks that split.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROSDEP = Path(__file__).resolve().parents[2] / 'shared' / 'ros2-src' / 'rosdep'
OS, CODENAME = 'ubuntu', 'noble'
DEPEND_TAGS = ('depend', 'build_depend', 'build_export_depend', 'exec_depend', 'test_depend')
#: the installers rosdep knows on Ubuntu (a dict keyed by these is an installer rule, not
#: a dict keyed by codename)
INSTALLERS = {'apt', 'pip', 'source', 'gem', 'npm'}


def package_keys() -> dict[str, str]:
    """rosdep key → the package.xml tag that names it."""
    root = ET.parse(ROOT / 'package.xml').getroot()
    return {el.text.strip(): tag for tag in DEPEND_TAGS for el in root.findall(tag)}


@lru_cache(maxsize=None)
def _database() -> tuple[dict, frozenset[str]]:
    """(system rules of base.yaml + python.yaml, the ROS packages Kilted releases)."""
    if not ROSDEP.is_dir():
        pytest.skip(
            f'rosdep database snapshot not found at {ROSDEP} (../shared/ros2-src/rosdep '
            'next to the repository)'
        )
    rules: dict = {}
    for name in ('base.yaml', 'python.yaml'):
        rules.update(yaml.safe_load((ROSDEP / name).read_text()))
    distro = yaml.safe_load((ROSDEP / 'kilted-distribution.yaml').read_text())
    packages = set()
    for repo_name, repo in distro['repositories'].items():
        release = repo.get('release')
        if release:  # a release without a package list releases one package named like the repo
            packages.update(release.get('packages') or [repo_name])
    return rules, frozenset(packages)


def _installer_rule_usable(rule) -> bool:
    """An OS-level rule for one release: a package list, or ``{installer: {packages: …}}``."""
    if rule is None:
        return False  # explicitly unsupported on this release
    if isinstance(rule, list):
        return True  # apt packages (an empty list: nothing to install, still resolved)
    if isinstance(rule, dict):
        if 'packages' in rule:  # the default installer with a package list
            return True
        installers = set(rule) & INSTALLERS
        return bool(installers) and all(
            isinstance(rule[i], dict) and 'packages' in rule[i] or isinstance(rule[i], list)
            for i in installers
        )
    return False


def system_rule_usable(entry) -> bool:
    """Whether a base.yaml/python.yaml entry installs something on Ubuntu Noble.

    The OS level is ``ubuntu`` (or ``'*'`` for any OS). Under it: a list (apt packages), an
    installer dict (``pip: {packages: …}``), or a dict keyed by codename whose ``noble`` (else
    ``'*'``) entry is one of those; a ``null`` there means the key is not available.
    """
    if not isinstance(entry, dict):
        return False
    os_rule = entry.get(OS, entry.get('*'))
    if os_rule is None:
        return False
    if isinstance(os_rule, dict) and not (set(os_rule) & INSTALLERS or 'packages' in os_rule):
        # keyed by codename
        if CODENAME in os_rule:
            return _installer_rule_usable(os_rule[CODENAME])
        return _installer_rule_usable(os_rule.get('*'))
    return _installer_rule_usable(os_rule)


def resolves(key: str) -> bool:
    rules, ros_packages = _database()
    return key in ros_packages or system_rule_usable(rules.get(key))


def test_resolver_reads_the_rule_shapes():
    """The resolver on the shapes the database uses (and a few real keys)."""
    assert system_rule_usable({'ubuntu': ['python3-numpy']})
    assert system_rule_usable({'ubuntu': {'*': ['python3-torch'], 'focal': None}})
    assert not system_rule_usable({'ubuntu': {'*': ['x'], 'noble': None}})
    assert system_rule_usable({'ubuntu': {'noble': ['x'], 'jammy': None}})
    assert not system_rule_usable({'ubuntu': {'jammy': ['x']}})
    assert system_rule_usable({'ubuntu': {'pip': {'packages': ['rosbags']}}})
    assert system_rule_usable({'*': {'pip': {'packages': ['opengen']}}})
    assert not system_rule_usable({'debian': ['x'], 'fedora': ['x']})
    assert system_rule_usable({'ubuntu': {'noble': {'pip': {'packages': ['x']}}}})
    # real keys: Debian package, pip-only, ROS package, and one that does not exist
    assert resolves('python3-numpy') and resolves('python3-rosbags-pip')
    assert resolves('rclpy') and resolves('launch_ros')
    assert not resolves('python3-onnx-pip') and not resolves('python3-lz4')


def test_every_package_xml_key_resolves_on_kilted_noble():
    keys = package_keys()
    unresolved = {k: tag for k, tag in sorted(keys.items()) if not resolves(k)}
    assert not unresolved, (
        f'package.xml keys with no rosdep rule for ROS 2 Kilted on Ubuntu {CODENAME} '
        f'({ROSDEP}): {unresolved}; `rosdep install` fails on them. Declare a key from the '
        'database, or pin the PyPI package in requirements-ros.txt (docs/install.md)'
    )
