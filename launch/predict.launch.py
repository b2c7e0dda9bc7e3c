"""Start the predictor node: `ros2 launch qcraft_world_model predict.launch.py [arg:=value ...]`.

Arguments: params_file (default: the package's config/predict.yaml), namespace, and overrides
that apply only when given — model_path, backend, precision, camera_names, camera_topics
(``qcraft_world_model/ros/launch_arguments.py``). DDS: dds_profile (default: the package's
config/fastdds_loopback.xml — every socket on 127.0.0.1, camera images over shared memory;
empty: Fast DDS's defaults with its large-data transport and discovery_range, default
LOCALHOST). docs/security.md says what each exposes.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from qcraft_world_model.ros.launch_arguments import ARGUMENTS, dds_environment, parameter_overrides


def _predictor(context):  # noqa: ANN001, ANN202 - launch's OpaqueFunction signature
    params_file = LaunchConfiguration("params_file").perform(context)
    given = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = parameter_overrides(given, params_file)
    env = dds_environment(LaunchConfiguration("dds_profile").perform(context),
                          LaunchConfiguration("discovery_range").perform(context))
    return [Node(package="qcraft_world_model", executable="predictor", name="predictor",
                 namespace=LaunchConfiguration("namespace"), output="screen", additional_env=env,
                 parameters=[params_file, *([overrides] if overrides else [])])]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("qcraft_world_model")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "predict.yaml"]),
                              description="node parameter YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("dds_profile",
                              default_value=PathJoinSubstitution([share, "config", "fastdds_loopback.xml"]),
                              description="Fast DDS XML profile; empty: Fast DDS defaults + discovery_range"),
        DeclareLaunchArgument("discovery_range", default_value="LOCALHOST",
                              description="without a profile: ROS_AUTOMATIC_DISCOVERY_RANGE (LOCALHOST, SUBNET, ...)"),
        *(DeclareLaunchArgument(name, default_value="", description=text) for name, text in ARGUMENTS.items()),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_predictor)])
