"""Start the predictor node: `ros2 launch qcraft_world_model predict.launch.py [arg:=value ...]`.

Arguments: params_file (default: the package's config/predict.yaml), namespace, and overrides
that apply only when given — model_path, backend, precision, camera_names, camera_topics
(``qcraft_world_model/ros/launch_arguments.py``) — plus discovery_range (default LOCALHOST:
DDS discovery stays on this machine; SUBNET to reach other hosts). Sets Fast DDS's large-data
transport: without it most large camera images are lost over UDP fragments (docs/node.md).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from qcraft_world_model.ros.launch_arguments import ARGUMENTS, parameter_overrides


def _predictor(context):  # noqa: ANN001, ANN202 - launch's OpaqueFunction signature
    params_file = LaunchConfiguration("params_file").perform(context)
    given = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = parameter_overrides(given, params_file)
    return [Node(package="qcraft_world_model", executable="predictor", name="predictor",
                 namespace=LaunchConfiguration("namespace"), output="screen",
                 parameters=[params_file, *([overrides] if overrides else [])])]


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("qcraft_world_model"), "config", "predict.yaml"])
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameter YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("discovery_range", default_value="LOCALHOST",
                              description="ROS_AUTOMATIC_DISCOVERY_RANGE: LOCALHOST, SUBNET, OFF or SYSTEM_DEFAULT"),
        *(DeclareLaunchArgument(name, default_value="", description=text) for name, text in ARGUMENTS.items()),
    ]
    return LaunchDescription([
        SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA"),
        *arguments,
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", LaunchConfiguration("discovery_range")),
        OpaqueFunction(function=_predictor),
    ])
