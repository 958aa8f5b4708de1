"""The README's layout table is the map of the tree, and tests/ mirrors videoccam/ file by file."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [p for p in out.splitlines() if (ROOT / p).exists()]


def _layout_rows() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


def test_every_row_of_the_readme_layout_exists():
    rows = _layout_rows()
    assert len(rows) == len(set(rows)), "a path is listed twice"
    missing = [row for row in rows if not (ROOT / row).exists() or (row.endswith("/") != (ROOT / row).is_dir())]
    assert not missing, f"README layout rows without a file or folder: {missing}"


def test_every_package_module_folder_and_tool_is_in_the_readme_layout():
    rows = set(_layout_rows())
    files = _tracked()
    wanted = {p for p in files if p.startswith("videoccam/") and p.endswith(".py") and not p.endswith("__init__.py")}
    wanted |= {p for p in files if p.startswith("tools/")}
    wanted |= {"/".join(p.split("/")[:i]) + "/" for p in files if p.startswith(("videoccam/", "configs/"))
               for i in range(1, p.count("/") + 1)}  # fmt: skip
    wanted |= {p.split("/")[0] + "/" for p in files if "/" in p and not p.startswith(".")}
    missing = sorted(wanted - rows)
    assert not missing, f"not in the README layout table: {missing}"


def test_tests_mirror_the_package():
    missing = []
    for path in _tracked():
        if path.startswith("videoccam/") and path.endswith(".py") and not path.endswith("__init__.py"):
            folder, name = path.removeprefix("videoccam/").rpartition("/")[::2]
            mirror = ROOT / "tests" / folder / f"test_{name}"
            if not mirror.is_file():
                missing.append(f"{path} -> {mirror.relative_to(ROOT)}")
    assert not missing, f"modules without a test file at the mirrored path: {missing}"
