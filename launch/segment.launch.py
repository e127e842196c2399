"""Start vsda_ros segmentation_node (and optionally RViz2).

    ros2 launch vsda_ros segment.launch.py image_topic:=/camera/image_raw rviz:=true
    ros2 launch vsda_ros segment.launch.py params_file:=my.yaml strategy:=keyframe namespace:=front
    ros2 launch vsda_ros segment.launch.py lifecycle:=true     # managed node, unconfigured

The node reads ``image`` (and ``image/compressed``) and publishes ``mask``, ``color_mask``,
``overlay``, ``confidence`` in its namespace, plus ``/diagnostics``. ``model``, ``strategy`` and
``device`` override the params file only when given on the command line. RViz shows the camera
and the masks of this launch's ``image_topic`` and ``namespace`` (a layout generated at launch).

``lifecycle:=true`` starts the managed node (``segmentation_lifecycle_node``, a launch_ros
``LifecycleNode``) instead: it comes up unconfigured, as a lifecycle manager (Nav2's, or
``ros2 lifecycle set``) expects; ``autostart:=true`` has this launch configure it and, once it is
inactive the first time, activate it. Its ``shutdown`` transition ends the process (status 0) and
with it the launch.

The launch lives and dies with its processes: when segmentation_node or RViz exits, everything
is shut down. ``ros2 launch`` returns ``LaunchService.run()``'s code, which is 0 unless an
exception was raised inside launch (then 1; a Shutdown event's reason does not change it), so a
process that exits with a non-zero code outside a shutdown raises here: the launch logs
"Caught exception in launch ... exited with code N", shuts down and exits 1. ``rviz:=true``
without rviz2 installed, a ``params_file`` that does not exist and a ``model:=`` path that does
not exist fail the same way before anything is started (one line naming the argument).
"""

import os
import tempfile

from ament_index_python.packages import (
    PackageNotFoundError,
    get_package_prefix,
    get_package_share_directory,
)
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vsda_ros.ros.tools.rviz_config import rviz_config

#: launch arguments that, when non-empty, override the params file's value of the same name.
OVERRIDES = ('model', 'strategy', 'device', 'backend', 'precision')


def _on_exit(event, context):
    """segmentation_node or RViz exited: shut the whole launch down; fail it on a non-zero code.

    Exits during a shutdown (Ctrl-C, or the other process exited first) are the shutdown itself
    and change nothing.
    """
    if context.is_shutdown:
        return None
    if event.returncode != 0:
        # the only way to make `ros2 launch` exit non-zero: LaunchService.run() returns 1 after
        # an exception in launch and shuts everything down
        raise RuntimeError(f'{event.process_name} exited with code {event.returncode}')
    return [EmitEvent(event=Shutdown(reason=f'{event.process_name} exited'))]


def _looks_like_path(model: str) -> bool:
    """A ``model`` value meant as a file or folder (model names have no slash or suffix)."""
    return (
        os.sep in model
        or model.startswith(('~', '.'))
        or model.endswith(('.pt', '.pth', '.onnx', '.xml'))
    )


def _autostart(node):
    """configure ``node`` now; activate it when it first reaches inactive from configuring (a
    later deactivate is left alone)."""
    from launch.events import matches_action
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    def change(transition_id):
        return EmitEvent(
            event=ChangeState(
                lifecycle_node_matcher=matches_action(node), transition_id=transition_id
            )
        )

    return [
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                start_state='configuring',
                goal_state='inactive',
                entities=[change(Transition.TRANSITION_ACTIVATE)],
                handle_once=True,
            )
        ),
        change(Transition.TRANSITION_CONFIGURE),
    ]


def _launch_setup(context):
    """The node (and RViz) for the resolved launch arguments, each tied to the launch's end."""
    share = get_package_share_directory('vsda_ros')
    params_file = LaunchConfiguration('params_file').perform(context) or os.path.join(
        share, 'config', 'segment.yaml'
    )
    # before starting anything (launch_ros would only warn and run the node on its defaults)
    if not os.path.isfile(os.path.expanduser(params_file)):
        raise RuntimeError(f'params_file:={params_file}: no such file')
    overrides = {}
    for name in OVERRIDES:
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    model = overrides.get('model', '')
    if _looks_like_path(model) and not os.path.exists(os.path.expanduser(model)):
        raise RuntimeError(
            f'model:={model}: no such checkpoint file or export folder (or give '
            'a model name: ros2 run vsda_ros vsda models lists them)'
        )
    namespace = LaunchConfiguration('namespace').perform(context)
    image_topic = LaunchConfiguration('image_topic').perform(context)
    rviz = IfCondition(LaunchConfiguration('rviz')).evaluate(context)
    if rviz:
        try:  # before starting anything: nothing is left running when RViz is missing
            get_package_prefix('rviz2')
        except PackageNotFoundError:
            raise RuntimeError(
                'rviz:=true but rviz2 is not installed (apt install '
                'ros-$ROS_DISTRO-rviz2, or launch with rviz:=false)'
            ) from None
    # The package's Fast DDS profile (64 MB shared-memory segment: 4K raw frames arrive)
    # unless the user has one.
    env = (
        {}
        if os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE')
        else {'FASTDDS_DEFAULT_PROFILES_FILE': os.path.join(share, 'config', 'fastdds_profile.xml')}
    )
    lifecycle = IfCondition(LaunchConfiguration('lifecycle')).evaluate(context)
    if lifecycle:
        from launch_ros.actions import LifecycleNode as node_action
    else:
        node_action = Node
    node = node_action(
        package='vsda_ros',
        executable='segmentation_lifecycle_node' if lifecycle else 'segmentation_node',
        name='segmentation_node',
        namespace=namespace,
        parameters=[params_file, overrides],  # later entries win
        remappings=[('image', image_topic), ('image/compressed', image_topic + '/compressed')],
        additional_env=env,
        output='screen',
    )
    actions = [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_on_exit))]
    if lifecycle and IfCondition(LaunchConfiguration('autostart')).evaluate(context):
        actions += _autostart(node)
    if rviz:
        layout = tempfile.NamedTemporaryFile('w', prefix='vsda_', suffix='.rviz', delete=False)
        with layout:
            layout.write(rviz_config(image_topic, namespace))
        viewer = Node(
            package='rviz2',
            executable='rviz2',
            name='rviz2',
            namespace=namespace,
            arguments=['-d', layout.name],
            output='screen',
        )
        actions += [
            viewer,
            RegisterEventHandler(OnProcessExit(target_action=viewer, on_exit=_on_exit)),
        ]
    return actions


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                'params_file',
                default_value='',
                description='YAML file with the node parameters '
                "(default: the package's config/segment.yaml)",
            ),
            DeclareLaunchArgument(
                'model',
                default_value='',
                description='Zoo model name or checkpoint path (overrides the '
                'params file when set)',
            ),
            DeclareLaunchArgument(
                'strategy',
                default_value='',
                description='per_frame, fusion or keyframe (overrides the params file when set)',
            ),
            DeclareLaunchArgument(
                'device',
                default_value='',
                description='cpu, cuda, cuda:N or auto (overrides the params file when set)',
            ),
            DeclareLaunchArgument(
                'backend',
                default_value='',
                description='torch, openvino, onnxruntime or auto (overrides the '
                'params file when set)',
            ),
            DeclareLaunchArgument(
                'precision',
                default_value='',
                description='fp32, bf16, int8 or auto (overrides the params file when set)',
            ),
            DeclareLaunchArgument(
                'namespace', default_value='', description='Namespace of the node and its topics'
            ),
            DeclareLaunchArgument(
                'image_topic',
                default_value='image',
                description='Input image topic (remapped to the node\'s "image"; '
                'its /compressed sibling to "image/compressed")',
            ),
            DeclareLaunchArgument(
                'lifecycle',
                default_value='false',
                description='Start the managed (lifecycle) node: unconfigured '
                'until configured (ros2 lifecycle set, a lifecycle '
                'manager, or autostart:=true)',
            ),
            DeclareLaunchArgument(
                'autostart',
                default_value='false',
                description='With lifecycle:=true: configure and then activate the node at launch',
            ),
            DeclareLaunchArgument(
                'rviz',
                default_value='false',
                description='Also start RViz2 showing the camera, colour mask and '
                'overlay of this namespace and image_topic',
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
