"""ament_python packaging for vsda_ros (also a plain pip-installable package)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'vsda_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    # the trained checkpoints shipped with the package (vsda_ros/models/shipped.py)
    package_data={'vsda_ros.zoo': ['*.pt']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (
            f'share/{PACKAGE}/config',
            glob('config/*.yaml') + glob('config/*.rviz') + glob('config/*.xml'),
        ),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='vsda_ros maintainers',
    maintainer_email='maintainers@users.noreply.github.com',
    description='Domain-adaptive video semantic segmentation for ROS 2 that stays accurate '
    'in adverse weather.',
    license='MIT',
    python_requires='>=3.10',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'vsda = vsda_ros.cli:main',
            'segmentation_node = vsda_ros.ros.segmentation_node:main',
            'segmentation_lifecycle_node = vsda_ros.ros.segmentation_node:lifecycle_main',
        ],
    },
)
