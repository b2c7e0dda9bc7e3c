"""pip build of the qcraft_world_model library (no ROS needed).

colcon builds the package as ament_cmake (package.xml) and ignores this file;
pip uses it for the library and the `qcraft-wm` command. The .msg files ship as
data under share/qcraft_world_model/msg so that offline tools (rosbags) can
register the package's message types without a ROS build.
"""

from glob import glob

from setuptools import setup

setup(
    data_files=[
        ("share/qcraft_world_model", ["package.xml"]),
        ("share/qcraft_world_model/msg", sorted(glob("msg/*.msg"))),
        ("share/qcraft_world_model/config", ["config/predict.yaml", "config/fastdds_loopback.xml"]),
        ("share/qcraft_world_model/config/models", sorted(glob("config/models/*.yaml"))),
        ("share/qcraft_world_model/models/lite", sorted(glob("models/lite/*"))),
        ("share/qcraft_world_model/models/lite-wide", sorted(glob("models/lite-wide/*"))),
        ("share/qcraft_world_model/models/lite-wide-photometric", sorted(glob("models/lite-wide-photometric/*"))),
    ],
)
