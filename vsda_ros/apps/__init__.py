"""The ``vsda`` commands: one module per command, each with ``add_parser(subparsers)`` (it
registers the command and sets ``func`` to its ``run``) and ``run(args) -> int`` (the exit
status). :mod:`vsda_ros.cli` only assembles them, in the order of :data:`COMMANDS`.

The applications sit on top of the library (models, inference, temporal, weather, data,
evaluation, adaptation); the library never imports them, nor argparse. Commands that drive a
ROS graph (demo, bench node, replay, eval --live) import :mod:`vsda_ros.ros.tools` only inside
``run``, so ``vsda --help`` works without rclpy.
"""

#: the modules under ``vsda_ros.apps``, in the order ``vsda --help`` lists the commands.
COMMANDS = (
    'segment',
    'fetch',
    'demo',
    'bench',
    'export',
    'prepare',
    'adapt',
    'eval',
    'bag',
    'models',
    'replay',
    'weather',
)
