"""The code blocks of README.md and docs/, with the marker each carries (tests/unit/test_docs.py).

Every fenced block is preceded by one HTML comment saying how it is checked:

- ``<!-- check: run -->``: executed by tests/integration/test_docs.py (a page's Python blocks in
  one namespace, in order; shell lines one by one in a scratch folder);
- ``<!-- check: parse -->``: every ``spp-sweep`` command in it is parsed by the CLI's own parser,
  and the study file it names is loaded (for commands that take minutes);
- ``<!-- check: study -->``: YAML that the study parser accepts (an excerpt is completed with a
  benchmark and a method);
- ``<!-- check: syntax -->``: YAML, TOML, Python or shell that parses;
- ``<!-- check: ci -->``: commands that ``.ci/run`` or ``.ci/checks`` run;
- ``<!-- needs: data|sweep|cluster|gpu|internet -->``: not run here, for the reason named (its
  ``spp-sweep`` commands are still parsed).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

MARKER = re.compile(r"^\s*<!-- (check|needs): ([a-z-]+) -->\s*$")
CHECKS = {"run", "parse", "study", "syntax", "ci"}
NEEDS = {"data", "sweep", "cluster", "gpu", "internet"}
# Generated reports (analysis/report.py writes them) are left out: they carry no commands to check.
GENERATED_REPORTS = "docs/results/*/report.md"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, from 1
    language: str
    text: str
    kind: str | None  # "check" or "needs"; None: no marker
    value: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def documents() -> list[Path]:
    generated = set(REPO.glob(GENERATED_REPORTS))
    return [REPO / "README.md", *sorted(p for p in (REPO / "docs").rglob("*.md") if p not in generated)]


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    found, index = [], 0
    while index < len(lines):
        stripped = lines[index].lstrip()
        if stripped.startswith("```"):
            indent = len(lines[index]) - len(stripped)
            language = stripped[3:].strip()
            end = index + 1
            while end < len(lines) and not lines[end].lstrip().startswith("```"):
                end += 1
            body = "\n".join(line[indent:] for line in lines[index + 1:end])
            previous = next((lines[k] for k in range(index - 1, -1, -1) if lines[k].strip()), "")
            match = MARKER.match(previous)
            found.append(Block(path, index + 1, language, body + "\n", *(match.groups() if match else (None, None))))
            index = end + 1
        else:
            index += 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in blocks(path)]


def shell_commands(text: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments and ``export`` lines
    dropped, ``&&`` chains split, leading ``VAR=value`` assignments removed."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.split("\n"):
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                words = words[1:]
            if words and words[0] != "export":
                commands.append(words)
    return commands
