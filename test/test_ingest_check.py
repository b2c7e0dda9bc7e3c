"""The offline ingest check on a bag with scripted faults, bag I/O errors, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qcraft_world_model.cli import main
from qcraft_world_model.data.rosbag_io import BagError, BagWriter, read_messages
from qcraft_world_model.data.pattern_bag import PatternCamera, PatternSpec, write_test_pattern_bag
from qcraft_world_model.eval.ingest_check import cameras_in_bag, check_bag

RIG = (
    PatternCamera("front", duplicate_frames=(10,), dropped_frames=(15, 16)),
    PatternCamera("front_left", compressed=True, corrupt_frames=(5,)),
    PatternCamera("front_right", truncated_frames=(8,), stops_at=20),
)


def small_bag(path: Path, storage: str = "mcap") -> Path:
    spec = PatternSpec(cameras=RIG, seconds=3.0, width=64, height=48)
    return write_test_pattern_bag(path, spec, storage=storage)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_every_scripted_fault_is_counted_and_healthy_cameras_keep_flowing(tmp_path: Path, storage: str) -> None:
    report = check_bag(small_bag(tmp_path / "bag", storage))
    cams = {c.name: c for c in report.cameras}
    assert set(cams) == {"front", "front_left", "front_right"}

    front = cams["front"]
    assert (front.messages, front.decoded, front.duplicates) == (28, 28, 1)
    assert front.errors == {}
    assert front.gaps == 2 and front.missing_frames == 3  # frame 10 lost to the duplicate, 15-16 dropped

    left = cams["front_left"]
    assert left.errors == {"MalformedImageError": 1} and "jpeg data" in left.error_examples[0]
    assert left.decoded == 29 and left.gaps == 1

    right = cams["front_right"]
    assert right.messages == 20 and right.errors == {"MalformedImageError": 1}
    assert "truncated" in right.error_examples[0]

    alignment = report.alignment
    # The node's policy: windows from frame 17 (front's lost frame 10 is bridged, its dropped 15-16
    # refill), none while front_right has just stopped (it may still be on its way), then
    # front_right held as stale once silent for 0.5 s: frames 24-29.
    frame = [round((stamp - 1_700_000_000_000_000_000) / 100_000_000) for stamp in alignment.stamps_ns]
    assert frame == [17, 18, 19, 24, 25, 26, 27, 28, 29], frame
    assert alignment.stale_by_camera == {"front": 0, "front_left": 0, "front_right": 6}
    assert alignment.skew_ms_max <= 2 * 20


def test_camera_names_come_from_what_sets_topics_apart(tmp_path: Path) -> None:
    names = [c.name for c in cameras_in_bag(small_bag(tmp_path / "bag"))]
    assert names == ["front", "front_left", "front_right"]


def test_writer_publishes_nothing_when_interrupted(tmp_path: Path) -> None:
    target = tmp_path / "bag"
    with pytest.raises(RuntimeError, match="simulated crash"):
        with BagWriter(target) as bag:
            bag.write_camera_frame("/cam", __import__("numpy").zeros((4, 4, 3), "uint8"), 1, "cam")
            raise RuntimeError("simulated crash")
    assert list(tmp_path.iterdir()) == [], "neither the bag nor its staging folder may remain"


def test_writer_refuses_to_overwrite_an_existing_bag(tmp_path: Path) -> None:
    small_bag(tmp_path / "bag")
    with pytest.raises(BagError, match="already exists"):
        BagWriter(tmp_path / "bag")


def test_file_in_the_way_of_the_output_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(BagError, match=r"cannot write bag .*afile/bag"):
        with BagWriter(tmp_path / "afile" / "bag"):
            pass


def test_corrupt_and_missing_bags_raise_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(BagError, match=r"cannot read bag .*nowhere"):
        list(read_messages(tmp_path / "nowhere"))
    bag = small_bag(tmp_path / "bag")
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:200])  # torn file
    with pytest.raises(BagError, match=r"cannot read bag .*bag"):
        list(read_messages(bag))


def test_undecodable_record_costs_one_frame_not_the_bag(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    from message_samples import TYPESTORE, cdr, image

    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=TYPESTORE)
        for i in range(5):
            good = image(i)
            good.header.stamp.sec = 10
            good.header.stamp.nanosec = i * 100_000_000
            writer.write(connection, i, b"\x00\x01\x00\x00\xff" if i == 2 else cdr("sensor_msgs/msg/Image", good))
    report = check_bag(bag)
    (cam,) = report.cameras
    assert (cam.messages, cam.decoded, cam.errors) == (5, 4, {"UndecodableRecord": 1})


def test_bag_without_cameras_is_refused(tmp_path: Path) -> None:
    from message_samples import samples

    with BagWriter(tmp_path / "bag") as bag:
        for typename, message in samples().items():
            bag.write("/" + typename.rsplit("/", 1)[-1], typename, message, 1)
    with pytest.raises(BagError, match="has no sensor_msgs/Image or CompressedImage topic"):
        check_bag(tmp_path / "bag")


def test_cli_check_bag_prints_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bag = small_bag(tmp_path / "bag")
    assert main(["check-bag", str(bag), "--json", str(tmp_path / "r.json")]) == 0
    assert "front_right: 1 x MalformedImageError" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [c["name"] for c in report["cameras"]] == ["front", "front_left", "front_right"]


def test_cli_check_bag_with_params_file_selects_cameras(tmp_path: Path) -> None:
    bag = small_bag(tmp_path / "bag")
    params = tmp_path / "p.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    cameras:\n      names: [left]\n"
        "      left: {topic: /sensing/camera/front_left/image_raw/compressed, transport: compressed}\n")
    assert main(["check-bag", str(bag), "--params-file", str(params), "--json", str(tmp_path / "r.json")]) == 0
    assert [c["name"] for c in json.loads((tmp_path / "r.json").read_text())["cameras"]] == ["left"]


def test_cli_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check-bag", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qcraft-wm check-bag: error: cannot read bag") and err.count("\n") == 1
