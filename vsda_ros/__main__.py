"""``python -m vsda_ros`` is the ``vsda`` command."""

from vsda_ros.cli import main

if __name__ == '__main__':
    raise SystemExit(main())
