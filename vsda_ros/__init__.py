"""vsda_ros: domain-adaptive video semantic segmentation for ROS 2.

The core (everything but :mod:`vsda_ros.ros`) imports no rclpy, so offline tools and the node
share one implementation and give identical results on identical frames.
"""

__version__ = '0.1.0'
