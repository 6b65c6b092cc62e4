"""Print the requirements of a pyproject.toml (base dependencies + the named extras), one per line.

The Dockerfile uses it to install only the dependencies in a layer of their own, before the source is
copied, so editing the code does not re-download TensorFlow. Standard library only (tomllib, Python 3.11+).

    python3 scripts/pyproject_deps.py pyproject.toml service > requirements.txt

Self-references such as ``cgan-synth[service,train]`` in an extra are expanded, not printed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_SELF_REF = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*\[(?P<extras>[^\]]*)\]\s*(?P<rest>.*)$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    own_name = _normalise(project["name"])
    optional = project.get("optional-dependencies", {})
    out: list[str] = []
    seen_extras: set[str] = set()

    def add(req: str) -> None:
        match = _SELF_REF.match(req)
        if match and _normalise(match["name"]) == own_name:
            if match["rest"].strip():
                raise SystemExit(f"self-reference with a marker or version is not supported: {req!r}")
            for extra in match["extras"].split(","):
                add_extra(extra.strip())
        elif req not in out:
            out.append(req)

    def add_extra(extra: str) -> None:
        if extra in seen_extras:
            return
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; pyproject defines {', '.join(sorted(optional))}")
        seen_extras.add(extra)
        for req in optional[extra]:
            add(req)

    for req in project.get("dependencies", []):
        add(req)
    for extra in extras:
        add_extra(extra)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: pyproject_deps.py PYPROJECT [EXTRA ...]", file=sys.stderr)
        return 2
    for req in requirements(Path(argv[0]), argv[1:]):
        print(req)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
