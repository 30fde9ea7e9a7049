"""The README stays true: its API table is the catalogue's."""

from __future__ import annotations

import pathlib

from fusedact._catalogue import markdown_table

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_table_matches_catalogue():
    text = README.read_text()
    start = text.index("<!-- API table")
    start = text.index("\n", start) + 1
    end = text.index("<!-- end API table -->")
    assert text[start:end].strip() == markdown_table().strip()


def test_readme_quick_start_has_two_commands():
    text = README.read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.strip().splitlines() if line.strip()]
    assert len(commands) == 2
    assert "python -m fusedact bench" in commands[0]
    assert "python -m pytest" in commands[1]
