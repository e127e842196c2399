"""The launch file and the params file against the node's one parameter table.

Static checks (the launch file parses, every parameter it can set is one the node declares,
every override has a launch argument, the params file documents every parameter) and, against
small stand-ins for the launch API, only what the real ``ros2 launch`` tests
(test_ros2_tools.py) cannot reach: what the exit handlers do on a clean exit and during a
shutdown, and the RViz layout (rviz2 is not installed there). The real tests cover the rest:
params file + overrides + namespace + remapping (``ros2 param dump``), a failed node failing the
launch, and the fail-before-start checks (missing params file, bad model path, rviz:=true
without rviz2).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from vsda_ros.ros.segmentation_node import PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / 'launch' / 'segment.launch.py'


def _module_constant(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, 'id', None) == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f'{name} not found in the launch file')


def _declared_arguments(tree: ast.Module) -> set[str]:
    return {
        n.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'DeclareLaunchArgument'
    }


def test_launch_overrides_only_declared_parameters_and_declares_their_arguments():
    tree = ast.parse(LAUNCH.read_text())
    overrides = set(_module_constant(tree, 'OVERRIDES'))
    assert overrides == {'model', 'strategy', 'device', 'backend', 'precision'}
    assert overrides <= set(PARAMETERS), f'undeclared: {overrides - set(PARAMETERS)}'
    args = _declared_arguments(tree)
    assert overrides | {'params_file', 'namespace', 'image_topic', 'rviz'} <= args
    # an override left empty must not clobber the params file: their defaults are ''
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Call)
            and getattr(n.func, 'id', '') == 'DeclareLaunchArgument'
            and n.args[0].value in overrides
        ):
            default = {k.arg: k.value for k in n.keywords}['default_value']
            assert ast.literal_eval(default) == '', n.args[0].value


def test_params_file_documents_every_parameter_with_its_default():
    text = (ROOT / 'config' / 'segment.yaml').read_text()
    doc = yaml.safe_load(text)
    assert list(doc) == ['/**']  # any node name / namespace (test_params_namespace.py)
    values = doc['/**']['ros__parameters']
    for name, spec in PARAMETERS.items():
        assert values[name] == spec.default, name
        assert text.count(f'\n    {name}:') == 1, name
        assert (
            text.split(f'\n    {name}:')[0].rstrip().rsplit('\n', 1)[-1].lstrip().startswith('#')
        ), f'{name}: no comment above it'
    assert set(values) == set(PARAMETERS)
    # every list parameter has a value, so `ros2 param dump` works (no typed-but-unset ones)
    assert values['image_topics'] == ['image', 'image/compressed']


def test_every_parameter_has_a_description():
    for name, spec in PARAMETERS.items():
        assert len(spec.description) > 20, name


# ---- the launch file run against stand-ins for launch / launch_ros ---------------------------
# Only the API named here exists in the stand-ins (all of it present in Humble, Jazzy, Kilted),
# so the launch file importing anything else fails these tests.


class _Entity:
    """A launch entity stand-in that records its constructor arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context) -> str:
        return context.launch_configurations[self.name]


class _IfCondition:
    """launch's rule: 'true'/'1' and 'false'/'0' (any case), anything else is an error."""

    def __init__(self, predicate) -> None:
        self.predicate = predicate

    def evaluate(self, context) -> bool:
        value = self.predicate.perform(context).lower()
        if value not in ('true', '1', 'false', '0'):
            raise ValueError(value)
        return value in ('true', '1')


class _PackageNotFoundError(KeyError):
    pass


class _Context:
    def __init__(self, is_shutdown: bool = False, **arguments: str) -> None:
        self.is_shutdown = is_shutdown
        self.launch_configurations = {
            'params_file': '',
            'model': '',
            'strategy': '',
            'device': '',
            'backend': '',
            'precision': '',
            'namespace': '',
            'image_topic': 'image',
            'rviz': 'false',
            'lifecycle': 'false',
            'autostart': 'false',
            **arguments,
        }


class _ProcessExited:
    def __init__(self, returncode: int, process_name: str = 'segmentation_node-1') -> None:
        self.returncode, self.process_name = returncode, process_name


@pytest.fixture
def launch_file(monkeypatch):
    """(the launch file as a module, the set of installed packages): imported against stubs."""
    import importlib.util
    import sys
    import types

    installed = {'vsda_ros'}

    def get_package_prefix(name: str) -> str:
        if name not in installed:
            raise _PackageNotFoundError(name)
        return '/opt/ros/x'

    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    kinds = (
        'LaunchDescription',
        'DeclareLaunchArgument',
        'EmitEvent',
        'OpaqueFunction',
        'RegisterEventHandler',
        'OnProcessExit',
        'Shutdown',
        'Node',
    )
    entity = {k: type(k, (_Entity,), {}) for k in kinds}
    module('ament_index_python')
    module(
        'ament_index_python.packages',
        PackageNotFoundError=_PackageNotFoundError,
        get_package_prefix=get_package_prefix,
        get_package_share_directory=lambda name: str(ROOT),
    )
    module('launch', LaunchDescription=entity['LaunchDescription'])
    module(
        'launch.actions',
        **{
            k: entity[k]
            for k in (
                'DeclareLaunchArgument',
                'EmitEvent',
                'OpaqueFunction',
                'RegisterEventHandler',
            )
        },
    )
    module('launch.conditions', IfCondition=_IfCondition)
    module('launch.event_handlers', OnProcessExit=entity['OnProcessExit'])
    module('launch.events', Shutdown=entity['Shutdown'])
    module('launch.substitutions', LaunchConfiguration=_LaunchConfiguration)
    module('launch_ros')
    module(
        'launch_ros.actions',
        Node=entity['Node'],
        LifecycleNode=type('LifecycleNode', (_Entity,), {}),
    )
    # lifecycle:=true autostart:=true only (imported where used)
    sys.modules['launch.events'].matches_action = lambda action: ('matches', action)
    module('launch_ros.event_handlers', OnStateTransition=type('OnStateTransition', (_Entity,), {}))
    module('launch_ros.events')
    module('launch_ros.events.lifecycle', ChangeState=type('ChangeState', (_Entity,), {}))
    module('lifecycle_msgs')
    module(
        'lifecycle_msgs.msg',
        Transition=types.SimpleNamespace(TRANSITION_CONFIGURE=1, TRANSITION_ACTIVATE=3),
    )
    spec = importlib.util.spec_from_file_location('segment_launch', LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, installed


def _setup(mod):
    """The function of the launch description's OpaqueFunction (where the nodes are made)."""
    (opaque,) = [
        e for e in mod.generate_launch_description().args[0] if type(e).__name__ == 'OpaqueFunction'
    ]
    return opaque.kwargs['function']


def _exit_handlers(actions) -> dict:
    """executable → on_exit callback of the OnProcessExit registered for that Node."""
    handlers = {}
    for action in actions:
        if type(action).__name__ == 'RegisterEventHandler':
            (handler,) = action.args
            assert type(handler).__name__ == 'OnProcessExit'
            target = handler.kwargs['target_action']
            assert target in actions, 'handler for a node this launch does not start'
            handlers[target.kwargs['executable']] = handler.kwargs['on_exit']
    return handlers


def test_launch_ends_with_the_node_and_fails_when_it_failed(launch_file):
    mod, _ = launch_file
    actions = _setup(mod)(_Context())
    nodes = [a for a in actions if type(a).__name__ == 'Node']
    assert [n.kwargs['executable'] for n in nodes] == ['segmentation_node']
    on_exit = _exit_handlers(actions)['segmentation_node']
    # clean exit: the whole launch shuts down (nothing left running), exit status 0
    (emit,) = on_exit(_ProcessExited(0), _Context())
    assert type(emit).__name__ == 'EmitEvent'
    assert type(emit.kwargs['event']).__name__ == 'Shutdown'
    # failed (FATAL at start-up, crash): an exception in launch = shutdown + `ros2 launch` exits 1
    for code in (1, -11):
        with pytest.raises(RuntimeError, match=f'exited with code {code}'):
            on_exit(_ProcessExited(code), _Context())
    # stopped by the launch's own shutdown (Ctrl-C): whatever the code, nothing more to do
    assert on_exit(_ProcessExited(-2), _Context(is_shutdown=True)) is None


def test_rviz_shows_this_launchs_topics_and_ends_the_launch(launch_file):
    from vsda_ros.ros.tools.rviz_config import rviz_config

    mod, installed = launch_file
    installed.add('rviz2')
    context = _Context(rviz='True', namespace='front', image_topic='/camera/image_raw')
    actions = _setup(mod)(context)
    node, viewer = [a for a in actions if type(a).__name__ == 'Node']
    assert node.kwargs['namespace'] == 'front'
    assert ('image', '/camera/image_raw') in node.kwargs['remappings']
    assert viewer.kwargs['executable'] == 'rviz2'
    flag, path = viewer.kwargs['arguments']
    assert flag == '-d'
    try:
        assert Path(path).read_text() == rviz_config('/camera/image_raw', 'front')
    finally:
        Path(path).unlink()
    on_exit = _exit_handlers(actions)['rviz2']
    (emit,) = on_exit(_ProcessExited(0, 'rviz2-2'), _Context())  # window closed: all stop
    assert type(emit.kwargs['event']).__name__ == 'Shutdown'
    with pytest.raises(RuntimeError, match='rviz2-2 exited with code 1'):
        on_exit(_ProcessExited(1, 'rviz2-2'), _Context())


def test_lifecycle_starts_the_managed_node_and_autostart_configures_then_activates(launch_file):
    mod, _ = launch_file
    actions = _setup(mod)(_Context(lifecycle='true'))
    (node,) = [a for a in actions if type(a).__name__ == 'LifecycleNode']
    assert node.kwargs['executable'] == 'segmentation_lifecycle_node'
    assert node.kwargs['name'] == 'segmentation_node'  # same name, parameters and topics
    assert 'segmentation_lifecycle_node' in _exit_handlers(actions)  # its end ends the launch
    assert not [a for a in actions if type(a).__name__ == 'EmitEvent']  # starts unconfigured

    actions = _setup(mod)(_Context(lifecycle='true', autostart='true'))
    (node,) = [a for a in actions if type(a).__name__ == 'LifecycleNode']
    (configure,) = [a for a in actions if type(a).__name__ == 'EmitEvent']
    event = configure.kwargs['event'].kwargs
    assert event == {'lifecycle_node_matcher': ('matches', node), 'transition_id': 1}
    (on_inactive,) = [
        a.args[0]
        for a in actions
        if type(a).__name__ == 'RegisterEventHandler'
        and type(a.args[0]).__name__ == 'OnStateTransition'
    ]
    assert on_inactive.kwargs['target_lifecycle_node'] is node
    assert (on_inactive.kwargs['start_state'], on_inactive.kwargs['goal_state']) == (
        'configuring',
        'inactive',
    )
    assert on_inactive.kwargs['handle_once']  # a later deactivate is not undone
    (activate,) = on_inactive.kwargs['entities']
    assert activate.kwargs['event'].kwargs['transition_id'] == 3
