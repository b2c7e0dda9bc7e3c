"""The ``qcraft-wm`` command: one entry point, one subcommand per job.

Every subcommand that measures something can write its result with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qcraft_world_model import __version__


def _write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def _cmd_check_bag(args: argparse.Namespace) -> int:
    from qcraft_world_model.eval.ingest_check import check_bag, format_report
    from qcraft_world_model.ingest import IngestConfig, load_parameters

    config = None
    if args.params_file is not None:
        config = IngestConfig.from_parameters(load_parameters(args.params_file, args.node_name))
    report = check_bag(args.bag, config)
    print(format_report(report))
    _write_json(args.json, report.to_dict())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from qcraft_world_model.demo import run_demo

    return run_demo(args.out, json_path=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qcraft-wm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check-bag", help="run a bag's camera frames through the node's ingest and report problems",
        description="Decode every camera frame of a rosbag2 (mcap or sqlite3) with the node's "
                    "decoder, ring window and multi-camera aligner, and count what would go wrong.")
    check.add_argument("bag", type=Path, help="rosbag2 directory")
    check.add_argument("--params-file", type=Path,
                       help="node parameter YAML selecting cameras and settings "
                            "(default: every camera topic in the bag, default settings)")
    check.add_argument("--node-name", default="predictor", help="node section to read from the YAML")
    check.add_argument("--json", type=Path, help="also write the report as JSON here")
    check.set_defaults(func=_cmd_check_bag)

    demo = sub.add_parser("demo", help="the main job on a fresh machine (see README)")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    demo.add_argument("--json", type=Path, help="also write the results as JSON here")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``qcraft-wm``; errors a user can fix exit 2 with one clear line."""
    from qcraft_world_model.data.rosbag_io import BagError
    from qcraft_world_model.ingest import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (BagError, ConfigError, FileNotFoundError) as err:
        print(f"qcraft-wm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
