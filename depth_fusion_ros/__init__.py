"""depth_fusion_ros: thermal + RGB fused metric depth (DMCF-SIDE) as a ROS 2 perception node.

The runtime package is plain Python/numpy except for the rclpy glue in the node modules; it never
imports torch at import time (only the `.pt2` backend loads it, lazily).
"""

__version__ = "0.1.0"
