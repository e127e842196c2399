"""Start vsda_ros segmentation_node (and optionally RViz2).

    ros2 launch vsda_ros segment.launch.py image_topic:=/camera/image_raw rviz:=true
    ros2 launch vsda_ros segment.launch.py params_file:=my.yaml strategy:=keyframe

The node reads ``image`` (and ``image/compressed``) and publishes ``mask``, ``color_mask``,
``overlay``, ``confidence`` in its namespace, plus ``/diagnostics``. ``model``, ``strategy`` and
``device`` override the params file only when given on the command line.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

#: launch arguments that, when non-empty, override the params file's value of the same name.
OVERRIDES = ('model', 'strategy', 'device')


def _segmentation_node(context):
    share = get_package_share_directory('vsda_ros')
    params_file = LaunchConfiguration('params_file').perform(context) or os.path.join(
        share, 'config', 'segment.yaml')
    overrides = {}
    for name in OVERRIDES:
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    image_topic = LaunchConfiguration('image_topic').perform(context)
    # The package's Fast DDS profile (16 MB shared-memory segment) unless the user has one.
    env = {} if os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE') else {
        'FASTDDS_DEFAULT_PROFILES_FILE': os.path.join(share, 'config', 'fastdds_profile.xml')}
    return [Node(
        package='vsda_ros',
        executable='segmentation_node',
        name='segmentation_node',
        namespace=LaunchConfiguration('namespace').perform(context),
        parameters=[params_file, overrides],  # later entries win
        remappings=[('image', image_topic), ('image/compressed', image_topic + '/compressed')],
        additional_env=env,
        output='screen',
    )]


def generate_launch_description():
    share = get_package_share_directory('vsda_ros')
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value='',
                              description='YAML file with the node parameters '
                                          '(default: the package\'s config/segment.yaml)'),
        DeclareLaunchArgument('model', default_value='',
                              description='Zoo model name or checkpoint path (overrides the '
                                          'params file when set)'),
        DeclareLaunchArgument('strategy', default_value='',
                              description='per_frame, fusion or keyframe (overrides the params '
                                          'file when set)'),
        DeclareLaunchArgument('device', default_value='',
                              description='cpu, cuda, cuda:N or auto (overrides the params '
                                          'file when set)'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its topics'),
        DeclareLaunchArgument('image_topic', default_value='image',
                              description='Input image topic (remapped to the node\'s "image"; '
                                          'its /compressed sibling to "image/compressed")'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='Also start RViz2 with config/vsda.rviz'),
        OpaqueFunction(function=_segmentation_node),
        Node(
            package='rviz2',
            executable='rviz2',
            name='rviz2',
            arguments=['-d', os.path.join(share, 'config', 'vsda.rviz')],
            condition=IfCondition(LaunchConfiguration('rviz')),
            output='screen',
        ),
    ])
