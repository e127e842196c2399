"""The ROS tools that drive ``segmentation_node`` from outside: ``vsda demo`` (:mod:`.demo`),
``vsda bench node`` (:mod:`.bench_node`), ``vsda replay`` (:mod:`.replay`), ``vsda eval --live``
(:mod:`.live_eval`), the node-process helpers they share (:mod:`.launcher`) and the RViz layout
(:mod:`.rviz_config`). The node itself (``vsda_ros.ros``) never imports them.
"""
