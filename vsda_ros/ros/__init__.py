"""ROS 2 layer of vsda_ros: message conversions and the segmentation node.

This subpackage is the only part of vsda_ros that imports rclpy / ROS message packages.
"""
