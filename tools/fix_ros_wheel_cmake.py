#!/usr/bin/env python3
"""Rewrite the build machine's paths baked into the ROS 2 pip wheels' CMake files.

The ROS 2 message wheels on PyPI export ``share/*/cmake/*.cmake`` files that
name the wheel builder's Python and NumPy include directories
(``/opt/python/cp311-cp311/...``). CMake refuses targets whose interface
includes a non-existent path, so building any package that depends on those
messages fails until the paths point at this interpreter's. Idempotent: a
second run finds nothing to rewrite.
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
from pathlib import Path

# The builder's prefix as it appears in the wheels (manylinux layout).
_BAKED_PYTHON = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
_BAKED_NUMPY = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_)?core/include"
)


def rewrite(text: str, python_include: str, numpy_include: str) -> str:
    """Return ``text`` with the baked include paths replaced by local ones."""
    text = _BAKED_NUMPY.sub(numpy_include, text)
    return _BAKED_PYTHON.sub(python_include, text)


def fix_prefix(prefix: Path) -> list[Path]:
    """Rewrite every CMake file under ``prefix/share`` that names baked paths.

    Returns the files that were changed.
    """
    import numpy  # imported here: only this command needs it

    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = []
    for path in sorted((prefix / "share").glob("*/cmake/*.cmake")):
        text = path.read_text()
        if "/opt/python/" not in text:
            continue
        new = rewrite(text, python_include, numpy_include)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix),
                        help="ROS prefix laid out by the wheels (default: this venv)")
    args = parser.parse_args(argv)
    changed = fix_prefix(args.prefix)
    print(f"fix_ros_wheel_cmake: rewrote {len(changed)} file(s) under {args.prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main())
