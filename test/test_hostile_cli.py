"""Hostile input to the real ``qcraft-wm`` command (a subprocess, as a user runs it): damaged bags, wrong
message types, broken model folders, output folders that are not the tool's, a planted checkpoint, and a
replay of a replay. Refusals exit 2 with one line on stderr naming the problem, and delete nothing the
tool did not make."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from qcraft_world_model.data.camera_rig import PinholeCamera
from qcraft_world_model.data.clip_dataset import shard_name, sidecar_path, write_manifest, write_shard
from qcraft_world_model.data.episode import Clip
from qcraft_world_model.data.generate import DatasetPlan
from qcraft_world_model.data.rosbag_io import BagWriter, bag_time_span, read_messages
from qcraft_world_model.data.pattern_bag import PatternCamera, PatternSpec, write_test_pattern_bag

from predictor_params import tiny_model

REPO = Path(__file__).resolve().parents[1]
CAMERA = "/sensing/camera/front/image_raw"
START_NS = 1_700_000_000 * 1_000_000_000
TINY_MODEL = tiny_model("tiny", head_dim=16)


def qcraft_wm(*args: str | Path, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command as a user runs it, from the repository root (where ``models/lite`` is)."""
    return subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)


def assert_refused(done: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, exactly one line on stderr (no traceback), naming the problem with ``words``."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: what "nothing deleted or changed" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def pattern_bag(path: Path, storage: str = "mcap") -> Path:
    """3 s of one 128x96 raw camera, no faults: every byte is deterministic."""
    spec = PatternSpec(cameras=(PatternCamera("front"),), seconds=3.0, width=128, height=96, jitter_ms=0.0)
    return write_test_pattern_bag(path, spec, storage=storage)


def overwrite_bytes(path: Path, offset: int, count: int = 4096) -> None:
    """Flip every bit of ``count`` bytes at ``offset``, as a bad disk sector or a torn copy leaves them."""
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = bytes(b ^ 0xFF for b in data[offset:offset + count])
    path.write_bytes(data)


def string_camera_bag(path: Path) -> Path:
    """A bag whose camera topic holds std_msgs/String."""
    with BagWriter(path) as bag:
        kind = bag.typestore.types["std_msgs/msg/String"]
        for i in range(5):
            bag.write(CAMERA, "std_msgs/msg/String", kind(data="not an image"), START_NS + i * 100_000_000)
    return path


def synthetic_dataset(root: Path, plan: DatasetPlan) -> Path:
    """A clip dataset shaped like ``generate clips`` writes for ``plan`` (one shard per episode, sidecars,
    manifest), with flat frames and one car ahead: no SUMO run needed."""
    size = plan.image_size
    camera = PinholeCamera("front", width=size, height=size)
    shards = []
    for episode in plan.episodes():
        frames, steps = episode.frame_steps, episode.window_steps
        agents = np.zeros((steps, 8, 5), np.float32)
        agents[:, 0] = (12.0, 0.0, 0.0, 5.0, 0.0)
        valid = np.zeros((steps, 8), bool)
        valid[:, 0] = True
        ego = np.zeros((steps, 5), np.float32)
        ego[:, 3] = 5.0
        clip = Clip(frames=np.full((frames, 1, size, size, 3), 90, np.uint8), ego=ego, agents=agents,
                    agent_valid=valid, agent_size=np.tile(np.float32([4.5, 1.8, 1.5]), (8, 1)),
                    agent_label=np.ones(8, np.uint8), agent_id=np.arange(8, dtype=np.int64),
                    agent_in_view=valid[:1].T.copy(), agent_visible_px=np.zeros((8, 1), np.int32),
                    agent_visibility=valid[:1].T.astype(np.float32), ego_pose_map=np.zeros(3), time_s=1.0)
        provenance = {"map": episode.map, "seed": episode.seed, "episode": asdict(episode),
                      "cameras": [camera.to_dict()]}
        shards.append(write_shard(root / shard_name(episode.map, episode.seed), [clip] * episode.clips, provenance))
    write_manifest(root, plan.split, shards, {"plan": asdict(plan)})
    return root


# -- 8. one line, exit 2, where there were tracebacks ----------------------------------------------------


@pytest.mark.parametrize("command", ["check-bag", "evaluate"])
def test_a_corrupt_sqlite_bag_is_one_line(tmp_path: Path, command: str) -> None:
    bag = pattern_bag(tmp_path / "bag", storage="sqlite3")
    database = bag / "bag.db3"
    overwrite_bytes(database, database.stat().st_size // 2 // 4096 * 4096)  # one whole page (apsw: CorruptError)
    before = files_of(bag)
    args = [bag] if command == "check-bag" else ["--data", bag, "--model", "models/lite", "--out", tmp_path / "r"]
    assert_refused(qcraft_wm(command, *args), f"qcraft-wm {command}: error:", str(bag), "malformed")
    assert files_of(bag) == before
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["check-bag", "evaluate"])
def test_a_camera_topic_of_another_type_is_named(tmp_path: Path, command: str) -> None:
    bag = string_camera_bag(tmp_path / "bag")
    args = [bag, "--params-file", "config/predict.yaml"] if command == "check-bag" else \
        ["--data", bag, "--model", "models/lite", "--out", tmp_path / "r"]
    assert_refused(qcraft_wm(command, *args), CAMERA, "std_msgs/msg/String")


@pytest.mark.parametrize("damage", ["truncated weights", "config.json not JSON", "no model.safetensors"])
def test_a_broken_model_folder_names_the_file(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        (folder / name).write_bytes((REPO / "models" / "lite" / name).read_bytes())
    if damage == "truncated weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        named = "model.safetensors"
    elif damage == "config.json not JSON":
        (folder / "config.json").write_text('{"model": {"preset": "lite",')
        named = "config.json"
    else:  # already one line before issue 11; kept so the three stay together
        (folder / "model.safetensors").unlink()
        named = "model.safetensors"
    before = files_of(folder)
    done = qcraft_wm("evaluate", "--model", folder, "--data", tmp_path / "data", "--out", tmp_path / "r")
    assert_refused(done, str(folder), named)
    assert files_of(folder) == before


def test_a_damaged_mcap_chunk_fails_check_bag_with_its_range(tmp_path: Path) -> None:
    bag = pattern_bag(tmp_path / "bag")
    assert qcraft_wm("check-bag", bag).returncode == 0  # intact: every chunk's CRC holds
    overwrite_bytes(bag / "bag.mcap", 300_000)  # inside the first chunk (1 MiB of camera frames)
    line = assert_refused(qcraft_wm("check-bag", bag), "bag.mcap is damaged", "CRC", "bytes 43-")
    assert "log time 1700000000.000-" in line


# -- 9. the user's data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["a folder with a user's file", "a user's file"])
def test_generate_bag_overwrite_leaves_what_is_not_a_bag(tmp_path: Path, target: str) -> None:
    if target == "a user's file":
        out = tmp_path / "notes.txt"
        out.write_text("mine")
    else:
        out = tmp_path / "out"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = files_of(tmp_path)
    done = qcraft_wm("generate", "bag", "--map", "braunschweig", "--seed", "4", "--seconds", "1", "--image-size", "32",
                     "--out", out, "--overwrite")
    assert_refused(done, str(out))
    assert files_of(tmp_path) == before


def test_a_bag_of_ours_is_replaced_and_an_empty_folder_used(tmp_path: Path) -> None:
    pattern_bag(tmp_path / "bag", storage="sqlite3")
    with BagWriter(tmp_path / "bag", overwrite=True) as bag:  # an sqlite3 bag replaced by an mcap one
        bag.write("/x", "std_msgs/msg/String", bag.typestore.types["std_msgs/msg/String"](data="new"), 5)
    assert sorted(p.name for p in (tmp_path / "bag").iterdir()) == ["bag.mcap", "metadata.yaml"]
    (tmp_path / "empty").mkdir()
    with BagWriter(tmp_path / "empty") as bag:  # nothing to lose: no --overwrite needed
        bag.write("/x", "std_msgs/msg/String", bag.typestore.types["std_msgs/msg/String"](data="new"), 5)
    assert [m.message.data for m in read_messages(tmp_path / "empty")] == ["new"]


def test_evaluate_does_not_replace_a_report_without_overwrite(tmp_path: Path) -> None:
    data = synthetic_dataset(tmp_path / "data", DatasetPlan("eval", ("berlin_adlershof",), clips=1,
                                                            clips_per_episode=1, seed_base=100_000))
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("last week's report")
    before = files_of(out)
    assert_refused(qcraft_wm("evaluate", "--model", "models/lite", "--data", data, "--out", out),
                   str(out), "--overwrite")
    assert files_of(out) == before
    # With --overwrite, a folder of evaluate's own files is replaced ...
    done = qcraft_wm("evaluate", "--model", "models/lite", "--data", data, "--out", out, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert (out / "report.md").read_text() != "last week's report" and (out / "metrics.json").is_file()
    # ... one holding anything else is not, and the input is never the output.
    (out / "notes.txt").write_text("mine")
    before = files_of(out)
    assert_refused(qcraft_wm("evaluate", "--model", "models/lite", "--data", data, "--out", out, "--overwrite"),
                   "notes.txt")
    assert files_of(out) == before
    before = files_of(data)
    assert_refused(qcraft_wm("evaluate", "--model", "models/lite", "--data", data, "--out", data, "--overwrite"),
                   "is the input")
    assert files_of(data) == before


def test_preview_writes_one_row_per_clip_asked_and_refuses_a_clip_out_of_range(tmp_path: Path) -> None:
    import cv2

    from qcraft_world_model.data.preview import dataset_preview

    data = synthetic_dataset(tmp_path / "data", DatasetPlan("train", ("braunschweig",), clips=2, clips_per_episode=1,
                                                            image_size=32))
    one, other, both = dataset_preview(data, [0]), dataset_preview(data, [1]), dataset_preview(data, [0, 1])
    assert both.dtype == np.uint8 and both.ndim == 3 and both.shape[2] == 3
    assert np.array_equal(both, np.vstack([one, other])) and not np.array_equal(one, other)  # captions differ
    done = qcraft_wm("preview", data, "--clips", "0,1", "--out", tmp_path / "pictures" / "preview.png")
    assert done.returncode == 0 and done.stdout == f"wrote {tmp_path / 'pictures' / 'preview.png'}\n", done.stderr
    assert np.array_equal(cv2.imread(str(tmp_path / "pictures" / "preview.png"))[..., ::-1], both)  # cv2 reads BGR
    assert_refused(qcraft_wm("preview", data, "--clips", "0,2", "--out", tmp_path / "none" / "preview.png"),
                   "clip 2 is out of range", "has 2 clips")
    assert not (tmp_path / "none").exists()


def test_generate_clips_leaves_a_manifest_that_is_not_its_own(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"experiment": "someone else's"}))
    before = files_of(out)
    done = qcraft_wm("generate", "clips", "--maps", "braunschweig", "--clips", "1", "--clips-per-episode", "1",
                     "--image-size", "32", "--workers", "1", "--out", out)
    assert_refused(done, str(out), "manifest.json")
    assert files_of(out) == before


def test_generate_clips_with_fewer_clips_orphans_no_shard(tmp_path: Path) -> None:
    common = ["--maps", "braunschweig", "--clips-per-episode", "1", "--image-size", "32", "--workers", "1"]
    out = synthetic_dataset(tmp_path / "data", DatasetPlan("train", ("braunschweig",), clips=2, clips_per_episode=1,
                                                           image_size=32))
    second = out / shard_name("braunschweig", 2)
    before = files_of(out)
    assert_refused(qcraft_wm("generate", "clips", *common, "--clips", "1", "--out", out),
                   str(out), second.name, "--overwrite")
    assert files_of(out) == before
    # The same plan resumes (nothing left to make: the shards stay as they are, the manifest is rewritten),
    # and --overwrite deletes exactly the shard the new plan drops.
    assert qcraft_wm("generate", "clips", *common, "--clips", "2", "--out", out).returncode == 0
    assert {k: v for k, v in files_of(out).items() if k != "manifest.json"} == \
        {k: v for k, v in before.items() if k != "manifest.json"}
    done = qcraft_wm("generate", "clips", *common, "--clips", "1", "--out", out, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert not second.exists() and not sidecar_path(second).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"]] == [shard_name("braunschweig", 1)]
    assert (out / shard_name("braunschweig", 1)).read_bytes() == before[shard_name("braunschweig", 1)]


# -- 12. no code from a run folder -----------------------------------------------------------------------


class Planted:
    """Unpickling this creates a file: the stand-in for any code a planted pickle would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return open, (str(self.marker), "w")


def test_train_does_not_unpickle_a_planted_checkpoint(tmp_path: Path) -> None:
    import torch

    data = synthetic_dataset(tmp_path / "data", DatasetPlan("train", ("braunschweig",), clips=1, clips_per_episode=1,
                                                            image_size=32))
    (tmp_path / "tiny.yaml").write_text(TINY_MODEL)
    run, marker = tmp_path / "run", tmp_path / "MARKER"
    run.mkdir()
    torch.save({"model": Planted(marker)}, run / "checkpoint.pt")
    assert not marker.exists()
    before = files_of(run)
    done = qcraft_wm("train", "--preset", tmp_path / "tiny.yaml", "--data", data, "--out", run, "--steps", "1",
                     "--batch", "1", "--warmup", "1")
    assert_refused(done, str(run / "checkpoint.pt"))
    assert not marker.exists(), "loading the checkpoint ran the planted code"
    assert files_of(run) == before


# -- 10, 11. replay: the bag clock, replaying a replay, dropped topics --------------------------------------


def test_the_played_topics_alone_start_the_clock(tmp_path: Path) -> None:
    from qcraft_world_model.data.rosbag_io import first_log_time

    with BagWriter(tmp_path / "bag") as bag:
        types = bag.typestore.types
        bag.write("/predictor/debug", "std_msgs/msg/String", types["std_msgs/msg/String"](data="old"), 0)
        bag.write_camera_frame(CAMERA, np.zeros((8, 8, 3), np.uint8), START_NS, "camera_front_optical")
    assert bag_time_span(tmp_path / "bag")[0] == 0
    assert first_log_time(tmp_path / "bag", [CAMERA]) == START_NS
    assert first_log_time(tmp_path / "bag", ["/nothing"]) is None


def _ros_env(domain: int) -> dict[str, str]:
    return {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def test_replay_refuses_its_input_and_a_folder_that_is_not_a_bag(tmp_path: Path) -> None:
    pytest.importorskip("rclpy", reason="replay needs rclpy")
    bag = pattern_bag(tmp_path / "bag")
    env = _ros_env(60 + os.getpid() % 20)
    before = files_of(tmp_path)
    assert_refused(qcraft_wm("replay", bag, "--out", bag, "--overwrite", "--wait", "1", env=env), "is the input")
    assert files_of(tmp_path) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    before = files_of(tmp_path)
    assert_refused(qcraft_wm("replay", bag, "--out", other, "--overwrite", "--wait", "1", env=env), "notes.txt")
    assert files_of(tmp_path) == before


class _FakePredictor:
    """Stands in for the predictor: publishes /diagnostics from the start, and an output whose type the
    bag cannot store; subscribes to the camera only once the replay listens to /diagnostics (so
    answers arrive before the first frame is played)."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Goals
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("fake_predictor", context=self.context)
        diagnostics = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        goals = self.node.create_publisher(Goals, "/predictor/goals", 10)
        self.heard_at: float | None = None
        self.camera = None

        def tick() -> None:
            diagnostics.publish(DiagnosticArray())
            goals.publish(Goals())
            if self.heard_at is None and self.node.count_subscribers("/diagnostics"):
                self.heard_at = time.monotonic()
            if self.camera is None and self.heard_at is not None and time.monotonic() - self.heard_at > 1.0:
                self.camera = self.node.create_subscription(Image, CAMERA, lambda _: None, 10)

        self.node.create_timer(0.05, tick)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.running:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        import rclpy

        self.running = False
        self.thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def test_replay_stamps_with_the_bag_clock_replays_a_replay_and_names_dropped_topics(tmp_path: Path) -> None:
    pytest.importorskip("rclpy", reason="replay needs rclpy")
    pytest.importorskip("nav_msgs.msg", reason="the stand-in output type comes from nav_msgs")
    domain = 80 + os.getpid() % 20
    source = pattern_bag(tmp_path / "source")
    # An earlier, broken replay's output: its predictor answers stamped at bag time 0 (1970).
    replayed = tmp_path / "replayed"
    with BagWriter(replayed) as bag:
        bag.write("/predictor/debug", "std_msgs/msg/String", bag.typestore.types["std_msgs/msg/String"](data="x"), 0)
        for message in read_messages(source):
            bag.write(message.topic, message.msgtype, message.message, message.log_time_ns)
    predictor = _FakePredictor(domain)
    try:
        first = qcraft_wm("replay", source, "--out", tmp_path / "out1", "--wait", "60", "--settle", "1",
                          env=_ros_env(domain), timeout=120)
    finally:
        predictor.close()
    assert "Traceback" not in first.stderr, first.stderr
    recorded = [m for m in read_messages(tmp_path / "out1") if m.topic == "/diagnostics"]
    assert recorded, first.stdout + first.stderr
    # What the predictor said before the first frame was played carries that frame's bag time, not 0.
    assert bag_time_span(tmp_path / "out1")[0] == START_NS
    assert min(m.log_time_ns for m in recorded) == START_NS
    assert "not recorded: /predictor/goals (nav_msgs/msg/Goals)" in first.stderr

    predictor = _FakePredictor(domain)
    try:
        # Paced from its first played message: ~3 s, not the 53 years since 1970 (a timeout here).
        second = qcraft_wm("replay", replayed, "--out", tmp_path / "out2", "--wait", "60", "--settle", "1",
                           env=_ros_env(domain), timeout=120)
    finally:
        predictor.close()
    assert "Traceback" not in second.stderr, second.stderr
    assert "not copied: /predictor/debug (std_msgs/msg/String)" in second.stderr
    assert bag_time_span(tmp_path / "out2")[0] == START_NS


def test_evaluate_tracks_on_a_clip_set_is_one_line(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "manifest.json").write_text("{}")
    done = qcraft_wm("evaluate", "--model", REPO / "models" / "lite", "--data", clips, "--out", tmp_path / "r",
                     "--tracks")
    assert done.returncode == 2 and "--tracks needs a scene bag" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
