"""ament_python package definition for depth_fusion_ros.

Builds with `colcon build` on a ROS 2 Jazzy machine and installs with `pip install .` into a venv.
Only the runtime package `depth_fusion_ros` is installed; `training/` stays a source tree.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "depth_fusion_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="depth_fusion_ros maintainers",
    maintainer_email="depth-fusion@example.com",
    description="Thermal + RGB fused metric depth (DMCF-SIDE) as a ROS 2 node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "depth_fusion_node = depth_fusion_ros.node:main",
            "depth_fusion_evaluator = depth_fusion_ros.evaluator:main",
            "depth_fusion_bag_player = depth_fusion_ros.bag.player:main",
            "ms2_to_bag = depth_fusion_ros.bag.ms2_to_bag:main",
            "bag_to_ms2 = depth_fusion_ros.bag.bag_to_ms2:main",
        ],
    },
)
