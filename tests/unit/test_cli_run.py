"""`spp-sweep run`'s own choices: how many threads a run takes when it is given none."""

from __future__ import annotations

import os

import pytest
import torch

from spp_sweep.cli import run as run_command


@pytest.mark.parametrize("load,expected", [(0.0, 2), (0.4, 2), (0.6, 1), (1.9, 1), (7.5, 1)])
def test_a_run_without_threads_takes_the_cores_others_leave_free(monkeypatch, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert run_command.free_cores() == expected


def test_never_more_threads_than_torch_would_take(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert run_command.free_cores() == 8
