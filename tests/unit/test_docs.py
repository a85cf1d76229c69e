"""The documentation cannot drift from the code: generated reference pages are current, every code
block says how it is checked and passes that check, and README's links resolve."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from spp_sweep import reference
from spp_sweep.cli import build_parser
from spp_sweep.sweep.study import _TOP_KEYS, load_study, parse_study
from tests.conftest import REPO
from tests.docs_blocks import CHECKS, NEEDS, Block, all_blocks, documents, shell_commands

BLOCKS = all_blocks()
SHELL = ("bash", "sh", "shell", "console", "")


def test_generated_reference_pages_are_current():
    assert reference.stale(REPO / "docs" / "reference") == [], "run: python -m spp_sweep.reference"


def test_the_study_file_reference_names_every_key():
    page = (REPO / "docs" / "reference" / "study-file.md").read_text()
    assert {key for key in _TOP_KEYS if f"### `{key}`" not in page} == set()


def test_every_code_block_says_how_it_is_checked():
    unmarked = [b.where for b in BLOCKS if b.kind is None]
    assert not unmarked, f"add a <!-- check: ... --> or <!-- needs: ... --> line before: {unmarked}"
    wrong = [b.where for b in BLOCKS if (b.kind == "check" and b.value not in CHECKS)
             or (b.kind == "needs" and b.value not in NEEDS)]
    assert not wrong


def _ids(blocks: list[Block]) -> list[str]:
    return [b.where for b in blocks]


SYNTAX = [b for b in BLOCKS if b.value == "syntax"]


@pytest.mark.parametrize("block", SYNTAX, ids=_ids(SYNTAX))
def test_syntax_blocks_parse(block):
    if block.language == "yaml":
        yaml.safe_load(block.text)
    elif block.language == "toml":
        pytest.importorskip("tomllib").loads(block.text)  # the standard library's from Python 3.11
    elif block.language == "python":
        ast.parse(block.text)
    else:
        subprocess.run(["bash", "-n"], input=block.text, text=True, check=True)


STUDIES = [b for b in BLOCKS if b.value == "study"]


@pytest.mark.parametrize("block", STUDIES, ids=_ids(STUDIES))
def test_study_blocks_are_valid_studies(block):
    data = yaml.safe_load(block.text)
    parse_study({"benchmark": "split_digits", "methods": {"finetune": {}}, **data})


COMMANDS = [(b, words) for b in BLOCKS if b.language in SHELL and b.value != "syntax"
            for words in shell_commands(b.text) if words[0] == "spp-sweep"]


@pytest.mark.parametrize("block,words", COMMANDS, ids=[f"{b.where}:{w[1]}" for b, w in COMMANDS])
def test_every_documented_command_parses(block, words):
    args = build_parser().parse_args(words[1:])  # a usage error exits 2 here, and fails the test
    study = getattr(args, "study", None)
    if args.command == "sweep" and study and not str(study).startswith(("s3://", "gs://")):
        load_study(REPO / study)  # the study file it names exists and is valid


def _without_quiet(words: list[str]) -> list[str]:
    return [w for w in words if w not in ("-q", "--quiet")]


CI = [b for b in BLOCKS if b.value == "ci"]


@pytest.mark.parametrize("block", CI, ids=_ids(CI))
def test_ci_blocks_are_what_ci_runs(block):
    ci = [_without_quiet(words) for name in ("run", "checks")
          for words in shell_commands((REPO / ".ci" / name).read_text())]
    for words in shell_commands(block.text):
        command = _without_quiet(words)
        assert any(command == c[:len(command)] for c in ci), f"{block.where}: `{' '.join(words)}` is not in .ci/"


def test_readme_links_resolve():
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(#[^)\s]+)?\)", text)
    missing = [t for t, _ in targets if "://" not in t and not (REPO / t).exists()]
    assert not missing
    anchors = {a[1:] for t, a in targets if a and not t}  # links within README
    headings = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, re.M)}
    assert anchors <= headings


def test_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().count("\n")
    assert 150 <= lines <= 250, lines
    assert "docs/developing.md" in (REPO / "README.md").read_text()  # how to add a method: one click


def test_readme_says_how_to_start_before_what_it_found():
    """What it is, two commands, a first sweep and the data format recommend reads, then the results."""
    text = (REPO / "README.md").read_text()
    order = [text.index(marker) for marker in ("## Two commands", "**A first sweep**", "numpy.savez(\"my_data.npz\"",
                                                "## What the paper's claims come to here", "## Speed")]
    assert order == sorted(order), order


def test_documents_are_found():
    names = {p.relative_to(REPO).as_posix() for p in documents()}
    assert {"README.md", "docs/developing.md", "docs/guide/sweeps.md", "docs/reference/study-file.md"} <= names
    assert not any(Path(n).name == "report.md" for n in names)


def _docs_check() -> str:
    """The line of .ci/checks that builds the documentation site."""
    lines = [line for line in (REPO / ".ci" / "checks").read_text().splitlines() if line.startswith(
        "NO_MKDOCS_2_WARNING=1 mkdocs build")]
    assert len(lines) == 1
    return lines[0]


def test_the_docs_check_fails_on_a_broken_link(tmp_path: Path) -> None:
    """The site builds strict without --quiet (with it, mkdocs exits 0 on a strict warning), so a
    link to a file nobody committed fails CI: planted here in a copy of the docs."""
    import shutil

    command = _docs_check()
    assert "--strict" in command and "--quiet" not in command
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    clean = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-2000:]
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write("\nSee [the figure](results/never_committed.pdf).\n")
    planted = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True)
    assert planted.returncode != 0 and "never_committed.pdf" in planted.stderr


def test_the_optuna_journal_path_in_the_docs_is_the_one_sweeps_write() -> None:
    from spp_sweep.trial_files import OPTUNA_JOURNAL, OPTUNA_PHASE

    written = f"{OPTUNA_PHASE}/{OPTUNA_JOURNAL}"
    for page in (REPO / "README.md", REPO / "docs" / "guide" / "sweeps.md"):
        paths = re.findall(r"results/sweeps/\S+?\.journal", page.read_text())
        assert paths and all(path.endswith("/" + written) for path in paths), (page, paths)
