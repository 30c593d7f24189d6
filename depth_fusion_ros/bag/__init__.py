"""rosbag2 tools: `ms2_to_bag` (MS2 image folders -> rosbag2) and `depth_fusion_bag_player`.

Both use the pure-Python `rosbags` library, so they work without a ROS 2 install; the bags they
write are read by `ros2 bag info/play` on ROS 2 Jazzy.
"""
