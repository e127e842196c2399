"""Start vsda_ros segmentation_node (and optionally RViz2).

    ros2 launch vsda_ros segment.launch.py image_topic:=/camera/image_raw rviz:=true

The node reads ``image`` (and ``image/compressed``) and publishes ``mask``, ``color_mask``,
``overlay``, ``confidence`` in its namespace, plus ``/diagnostics``.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory('vsda_ros')
    params_file = LaunchConfiguration('params_file')
    image_topic = LaunchConfiguration('image_topic')
    return LaunchDescription([
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'segment.yaml'),
                              description='YAML file with the node parameters'),
        DeclareLaunchArgument('model', default_value='espnet-camvid',
                              description='Zoo model name or checkpoint path'),
        DeclareLaunchArgument('strategy', default_value='per_frame',
                              description='Temporal strategy'),
        DeclareLaunchArgument('device', default_value='cpu',
                              description='cpu, cuda, cuda:N or auto'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its topics'),
        DeclareLaunchArgument('image_topic', default_value='image',
                              description='Input image topic (remapped to the node\'s "image")'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='Also start RViz2 with config/vsda.rviz'),
        Node(
            package='vsda_ros',
            executable='segmentation_node',
            name='segmentation_node',
            namespace=LaunchConfiguration('namespace'),
            # Later entries win: the launch arguments override the params file.
            parameters=[params_file, {
                'model': LaunchConfiguration('model'),
                'strategy': LaunchConfiguration('strategy'),
                'device': LaunchConfiguration('device'),
            }],
            remappings=[
                ('image', image_topic),
                ('image/compressed', [image_topic, '/compressed']),
            ],
            output='screen',
        ),
        Node(
            package='rviz2',
            executable='rviz2',
            name='rviz2',
            arguments=['-d', os.path.join(share, 'config', 'vsda.rviz')],
            condition=IfCondition(LaunchConfiguration('rviz')),
            output='screen',
        ),
    ])
