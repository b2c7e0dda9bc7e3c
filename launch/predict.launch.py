"""Start the predictor node: `ros2 launch qcraft_world_model predict.launch.py [arg:=value ...]`.

Arguments: params_file (default: the package's config/predict.yaml), namespace,
model_path, backend, precision. Sets Fast DDS's large-data transport, without
which large camera images are mostly lost (docs: ENVIRONMENT, DDS transport).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("qcraft_world_model"), "config", "predict.yaml"])
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameter YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("model_path", default_value="", description="model folder; empty: shipped lite"),
        DeclareLaunchArgument("backend", default_value="auto", description="auto, torch, onnxruntime, tensorrt"),
        DeclareLaunchArgument("precision", default_value="", description="fp32, bf16, fp16, mixed-int8"),
    ]
    node = Node(
        package="qcraft_world_model", executable="predictor", name="predictor",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"), {
            "model.path": LaunchConfiguration("model_path"),
            "model.backend": LaunchConfiguration("backend"),
            "model.precision": LaunchConfiguration("precision"),
        }],
    )
    return LaunchDescription([SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA"), *arguments, node])
