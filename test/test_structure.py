"""The folder layout is the architecture: imports run one way, ROS stays at the edge (read from the code)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "qcraft_world_model"
#: Lower layers never import higher ones. 0: building blocks; 1: what uses them offline or at run time;
#: 2: the edges (the ROS node, the CLI, the demo).
LAYER = {"ingest": 0, "model": 0, "quant": 0, "msg": 0,
         "data": 1, "train": 1, "eval": 1, "runtime": 1, "bench": 1,
         "ros": 2, "cli": 2, "demo": 2}


def imports() -> list[tuple[str, str, str]]:
    """(file, its part, imported module) for every import in the package, lazy ones included."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        part = parts[0] if len(parts) > 1 else path.stem
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [(str(path.relative_to(PACKAGE)), part, name) for name in names]
    return found


def test_every_part_has_a_layer() -> None:
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    parts |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert parts <= set(LAYER), f"new part(s) without a layer: {parts - set(LAYER)}"


def test_no_import_runs_up_a_layer() -> None:
    upward = [f"{file} imports {name}" for file, part, name in imports()
              if name.startswith("qcraft_world_model.") and LAYER.get(name.split(".")[1], -1) > LAYER.get(part, 9)]
    assert not upward, "\n".join(upward)


def test_run_time_code_never_imports_training() -> None:
    """The node, the runtime and the benchmarks load models through runtime/model_folder.py."""
    bad = [f"{file} imports {name}" for file, part, name in imports()
           if part in ("ros", "runtime", "bench") and name.startswith("qcraft_world_model.train")]
    assert not bad, "\n".join(bad)


def test_the_cli_imports_training_only_to_train_and_write_the_card() -> None:
    """Run-time commands (bench, export, calibrate, ...) reach models through runtime/, not train/; the
    module level may name train/config.py (torch-free), whose defaults the train command shows."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    allowed = {"_cmd_train": "qcraft_world_model.train.trainer", "_cmd_evaluate": "qcraft_world_model.train.model_card"}
    bad = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qcraft_world_model.train"):
            if node.module != "qcraft_world_model.train.config":
                bad.append(f"module level imports {node.module}")
        elif isinstance(node, ast.FunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("qcraft_world_model.train") \
                        and allowed.get(node.name) != inner.module:
                    bad.append(f"{node.name} imports {inner.module}")
    assert not bad, "\n".join(bad)


def test_rclpy_is_imported_only_under_ros() -> None:
    bad = [f"{file} imports {name}" for file, part, name in imports()
           if name.split(".")[0] in ("rclpy", "launch", "launch_ros") and part != "ros"]
    assert not bad, "\n".join(bad)


def test_parts_do_not_import_each_other_in_a_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for _, part, name in imports():
        if name.startswith("qcraft_world_model.") and name.split(".")[1] in LAYER and name.split(".")[1] != part:
            edges.setdefault(part, set()).add(name.split(".")[1])

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges.get(start, ()))

    cycles = sorted(p for p in edges if reaches(p, p, {p}))
    assert not cycles, f"parts in an import cycle: {cycles} ({ {p: sorted(edges[p]) for p in cycles} })"
