"""The test tiers (tests/conftest.py): a test that starts a process, itself or through a helper
of its module, is marked ``subprocess``; tests/integration is ``slow``."""

from __future__ import annotations

import pytest

from tests.conftest import spawning_tests

SOURCE = '''
import subprocess

def helper():
    return subprocess.run(["true"])

def deeper():
    return helper()

def test_direct():
    subprocess.run(["true"])

def test_through_helpers():
    deeper()

def test_alone():
    assert True

def swept():  # a fixture
    return helper()

def test_through_a_fixture(swept):
    assert swept

def test_through_a_fixture_named(name, request):  # parametrised with fixture names
    assert request.getfixturevalue("swept")
'''


def test_a_test_starting_a_process_itself_or_through_its_modules_helpers_is_found() -> None:
    assert spawning_tests(SOURCE) == {"test_direct", "test_through_helpers", "test_through_a_fixture",
                                     "test_through_a_fixture_named"}


def test_this_file_is_in_the_quick_tier(request: pytest.FixtureRequest) -> None:
    marks = {mark.name for mark in request.node.iter_markers()}
    assert not {"slow", "subprocess", "ray"} & marks
