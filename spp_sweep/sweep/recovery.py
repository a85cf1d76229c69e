"""What a sweep folder already holds, so a resumed phase neither loses nor reruns a trial.

Ray Tune restores an experiment from state files it writes in place and syncs in a
background thread; a driver killed at the wrong moment leaves them unreadable, or naming
fewer trials than it started.  These helpers read the trial folders themselves (local or
shared-file-system storage): which grid points have a trial, whether the saved state loads,
and what to set aside and continue from when it does not.
"""

from __future__ import annotations

import json
import pickletools
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

from .. import trial_files
from .storage import local_folder


def _ended(reports: list[dict[str, Any]]) -> bool:
    """Whether a trial's last report says it finished its run (diverged runs end too)."""
    return bool(reports) and reports[-1].get("status") in trial_files.ENDED_STATUSES


DISK_FULL_MARKS = ("No space left on device", "[Errno 28]", "[errno 28]", "Disk quota exceeded", "[Errno 122]")


def _configuration_reads(folder: Path) -> bool:
    try:
        json.loads((folder / trial_files.PARAMS).read_text())["trial"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def failed_for_want_of_space(folder: Path) -> bool:
    """Whether a trial folder is what a full disk (or a writer stopped mid-file) left: its
    configuration file is empty or cut, or its error says the disk was full or is empty (the
    disk filled while Ray wrote it). Such a trial is not done: it is rerun (continuing from its
    checkpoints where its configuration reads) once there is space, not kept as errored."""
    if not _configuration_reads(folder):
        return True
    if not (folder / trial_files.ERROR).exists():
        return False
    try:
        error = (folder / trial_files.ERROR).read_text(errors="replace")
    except OSError:
        return True
    return not error.strip() or any(mark in error for mark in DISK_FULL_MARKS)


def stopped_for_want_of_space(path: str) -> bool:
    """Whether the experiment at ``path`` (local storage) holds a trial that a full disk stopped,
    or one whose configuration file does not read (Ray Tune's restore would not mend it, and the
    trial would be lost from every table)."""
    from ..results.load import read_final_reports

    folders = [params.parent for params in Path(path).glob(f"*/{trial_files.PARAMS}")]
    return any(not _configuration_reads(folder) or
               (failed_for_want_of_space(folder) and not _ended(read_final_reports(folder))) for folder in folders)


def _done(folder: Path) -> bool:
    """A trial that counts as done when a phase continues from its folders: its configuration
    reads (a params.json cut by a full disk does not, and its point runs again), and it ended
    or errored for a reason of its own (a full disk is not one)."""
    from ..results.load import read_final_reports

    if failed_for_want_of_space(folder):
        return False
    return _ended(read_final_reports(folder)) or (folder / trial_files.ERROR).exists()


def missing_points(points: list[dict[str, Any]], root: str, names: list[str]) -> list[dict[str, Any]]:
    """The points with no trial folder in any of the experiments ``names``."""
    present = set().union(*(trial_keys(f"{root}/{name}") for name in names))
    return [p for p in points if point_key(p) not in present]


def resumable(points: list[dict[str, Any]], root: str, names: list[str]) -> list[dict[str, Any]]:
    """Points whose trial was moved aside unfinished (see abandon) continue from its checkpoints."""
    moved = {}
    for params in [f for name in names for f in sorted(Path(root, name).glob(".abandoned-*/*/params.json"))]:
        try:
            moved[point_key(json.loads(params.read_text())["trial"])] = str(params.parent)
        except (ValueError, KeyError, OSError):
            continue
    return [{**p, "resume_from": moved[point_key(p)]} if point_key(p) in moved else p for p in points]


def point_key(spec: dict[str, Any]) -> str:
    """A grid point's identity (a stacked trial's: its members', stack_plan.py)."""
    if "members" in spec:
        return json.dumps([point_key(member) for member in spec["members"]])
    # a whole number and its float are one value (a sweep from before grids of float settings
    # were written as floats has lam 12 where its study now says 12.0)
    params = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
              for k, v in spec.get("params", {}).items()}
    return json.dumps([spec["method"], spec["seed"], params], sort_keys=True, default=str)


def trial_keys(path: str) -> set[str]:
    """The points that already have a trial in an experiment folder (local storage only);
    a stacked trial counts for each of its members."""
    if not Path(path).is_dir():
        return set()
    keys: set[str] = set()
    for params in Path(path).glob("*/params.json"):
        try:
            spec = json.loads(params.read_text())["trial"]
            keys.update(point_key(member) for member in spec.get("members", [spec]))
        except (ValueError, KeyError, OSError):
            continue
    return keys


def revive_stacks(points: list[dict[str, Any]], root: str,
                  names: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(stacked trials moved aside unfinished whose members are all among ``points``, each to
    continue from its checkpoints as it was; the points left). A stack is revived whole, so a
    changed plan (other memory, other slots) never restarts a stack's finished tasks."""
    left = {point_key(p): p for p in points}
    revived = []
    for params in [f for name in names for f in sorted(Path(root, name).glob(".abandoned-*/*/params.json"))]:
        try:
            spec = json.loads(params.read_text())["trial"]
        except (ValueError, KeyError, OSError):
            continue
        keys = [point_key(member) for member in spec.get("members", [])]
        if keys and all(key in left for key in keys):
            revived.append({**spec, "resume_from": str(params.parent)})
            for key in keys:
                del left[key]
    return revived, list(left.values())


# The state files Ray Tune writes in an experiment folder, by name; anything else there is not read.
RAY_STATE_FILES = re.compile(r"^(?:tuner\.pkl|(?:experiment_state|basic-variant-state|search_gen_state|searcher-state)"
                             r"-[\w.-]*\.(?:json|pkl))$")


def saved_state(path: str) -> str:
    """``none``, ``valid`` or ``corrupt``: can Ray Tune restore the experiment at ``path``?

    Ray Tune writes its state files in place and copies them to storage in a background
    thread, so a driver killed at the wrong moment leaves an empty or half-written file
    there, from which ``Tuner.restore`` would silently restore nothing. Checked here, for
    local storage; the newest file of each kind is the one a restore reads.
    """
    from ray import tune

    folder = local_folder(path)
    if folder is None:
        return "valid" if tune.Tuner.can_restore(path) else "none"
    files = [f for f in folder.glob("*") if f.is_file() and RAY_STATE_FILES.match(f.name)]
    if not any(f.name.startswith("experiment_state") for f in files):
        return "corrupt" if (folder / "tuner.pkl").exists() else "none"
    newest: dict[str, Path] = {}
    for file in sorted(files, key=lambda f: f.name):  # Ray's own choice: the greatest name (its session's start)
        newest[re.sub(r"-?\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d.*$", "", file.stem)] = file
    return "valid" if all(_readable(file) for file in newest.values()) else "corrupt"


def _readable(file: Path) -> bool:
    """Whether a state file is whole JSON or a whole pickle (Ray writes both, not always by suffix).

    A pickle is walked opcode by opcode (pickletools), never loaded: a cut-short one ends before
    its STOP and is refused, and nothing in it runs (whether Ray may unpickle it at all is
    provenance.py's question)."""
    try:
        data = file.read_bytes()
    except OSError:
        return False
    try:
        json.loads(data)
        return True
    except ValueError:
        pass
    try:
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name == "STOP":
                return True
    except Exception:  # noqa: BLE001 - a cut-short or foreign file raises ValueError, IndexError, ...
        return False
    return False


def abandon(path: str, why: str = "the driver was stopped, or its disk filled, while writing it") -> None:
    """Move an unreadable Ray Tune state, and the trials it leaves unfinished, into ``.abandoned-N``.

    Finished (and diverged or errored) trials stay where they are and count as done; the
    phase goes on as a new experiment in the same folder for what is left, and an unfinished
    grid trial continues from its own newest checkpoint (trial config ``resume_from``). A trial
    that errored because the disk was full is unfinished (:func:`failed_for_want_of_space`).
    """
    import shutil

    folder = Path(path)
    target = _next_aside(folder)
    moved = 0
    for item in list(folder.iterdir()):
        if item.name.startswith("."):
            continue
        if item.is_dir():
            if _done(item):
                continue
            moved += 1
        shutil.move(str(item), str(target / item.name))
    sys.stderr.write(f"spp-sweep: Ray Tune's saved state in {path} cannot be resumed as it is ({why}); moved it and "
                     f"{moved} unfinished trial(s) to {target.name}/ and continuing from the trial folders\n")


def set_aside_strays(path: str, owned: set[str]) -> int:
    """Move trial folders the restored experiment does not own, and that never ended, into
    ``.abandoned-N``; returns how many. ``owned``: the folder names of the experiment's trials.

    Grid phases snapshot Ray Tune's state every few seconds, not after every event (runner.py),
    so a driver killed after a trial started but before the next snapshot restores an
    experiment without that trial. Its folder holds params.json and maybe checkpoints; set
    aside, its point runs in the phase's ``-rest`` experiment and continues from the newest of
    those checkpoints (:func:`resumable`), so no task is trained twice.
    """
    import shutil

    folder = Path(path)
    strays = [item for item in sorted(folder.iterdir()) if item.is_dir() and not item.name.startswith(".")
              and (item / trial_files.PARAMS).exists() and item.name not in owned and not _done(item)]
    if strays:
        target = _next_aside(folder)
        for item in strays:
            shutil.move(str(item), str(target / item.name))
        sys.stderr.write(f"spp-sweep: {len(strays)} trial(s) in {path} were started after Ray Tune's last "
                         f"snapshot; moved to {target.name}/ and continuing them from their checkpoints\n")
    return len(strays)


def recreate_named_checkpoints(path: str) -> int:
    """Before a restore: an empty folder for each checkpoint the saved state names but Ray already
    deleted; returns how many.

    Grid phases snapshot at Ray's own pace (runner.py), and each trial keeps only its two newest
    checkpoints, so a snapshot can name one deleted since. Ray then refuses to restore that trial
    ("does not exist on storage anymore") and it ends errored. The trainable never resumes from
    the named checkpoint anyway, but from the newest readable one in the trial's folder
    (trainable.newest_first): an empty placeholder, tried last, satisfies Ray and changes nothing.
    """
    folder = Path(path)
    states = sorted(folder.glob("experiment_state-*.json"), key=lambda f: f.name)  # the one Ray restores: last
    try:
        trials = json.loads(states[-1].read_bytes())["trial_data"] if states else []
    except (OSError, ValueError, KeyError):
        return 0
    made = 0
    for trial_state, runtime in trials:
        try:  # the trial's folder, and the checkpoint names in its (pickled, hex-encoded) checkpoint manager
            trial_folder = folder / json.loads(trial_state)["relative_logdir"]
            names = {name.decode() for blob in re.findall(r'"value": "([0-9a-f]+)"', runtime) if len(blob) % 2 == 0
                     for name in re.findall(rb"checkpoint_\d{6}", bytes.fromhex(blob))}
        except (ValueError, KeyError, TypeError):
            continue
        for name in sorted(names):
            if trial_folder.is_dir() and not (trial_folder / name).exists():
                (trial_folder / name).mkdir()
                made += 1
    return made


def clear_damaged_checkpoints(path: str) -> int:
    """Before a restore: empty each trial checkpoint that a full disk or a killed copy cut short
    (a file of no bytes, a ``.pt``/``.npz`` that is not a whole zip archive, a ``.json`` that does
    not parse); returns how many. Ray Tune may name such a checkpoint in its saved state, so the
    folder stays, empty: the trainable skips it for an older whole one (trainable.resume_from),
    and nothing in the sweep folder looks complete and is not."""
    import zipfile

    def whole(file: Path) -> bool:
        try:
            if file.stat().st_size == 0:
                return False
            if file.suffix in (".pt", ".npz"):
                return zipfile.is_zipfile(file)  # torch.save and numpy.savez write zip archives
            if file.suffix == ".json":
                json.loads(file.read_bytes())
        except (OSError, ValueError):
            return False
        return True

    cleared = 0
    for checkpoint in sorted(Path(path).glob("*/checkpoint_*")):
        files = [f for f in checkpoint.rglob("*") if f.is_file()]
        if checkpoint.is_dir() and not all(whole(f) for f in files):
            for file in files:
                file.unlink()
            cleared += 1
    return cleared


def mend_report_files(path: str) -> int:
    """Before a phase continues: a trial whose report file (Ray Tune's result.json, written by the
    driver) lost its final report to a full disk, though its final checkpoint holds the result,
    gets that report written back (marked ``recovered_from``); returns how many. Readers rebuild
    it anyway (analysis.load.read_final_reports); this keeps the folder saying what it holds."""
    from ..atomic_files import atomic_write
    from ..results.load import final_from_checkpoint, read_reports

    mended = 0
    for params in sorted(Path(path).glob(f"*/{trial_files.PARAMS}")):
        folder = params.parent
        reports = read_reports(folder)
        if reports and reports[-1].get("status") in trial_files.ENDED_STATUSES:
            continue
        recovered = final_from_checkpoint(folder, reports)
        if recovered is None:
            continue
        lines = [json.dumps(report) for report in reports + [recovered]]
        atomic_write(folder / trial_files.RESULT, ("\n".join(lines) + "\n").encode())
        mended += 1
    return mended


def _next_aside(folder: Path) -> Path:
    target = folder / f".abandoned-{len(list(folder.glob('.abandoned-*'))) + 1}"
    target.mkdir()
    return target


class EndedConfiguration(NamedTuple):
    """A configuration that ended in an experiment folder, as a resumed Optuna phase tells it
    to its method's new study: its searched values, its score, where the ASHA scheduler stopped
    it (rungs.py) after how many tasks (None: it ran to the end, or diverged), and its method."""

    params: dict[str, Any]
    score: float
    stopped_after: int | None
    method: str = ""


def done_trials(path: str, metric: str = "acc") -> list[EndedConfiguration]:
    """Every configuration that ended in an experiment folder (local only; a stack's members one
    by one). A final report rebuilt from a checkpoint (its report file was cut) has no score: it
    is the ``metric`` there, as the trial would have reported it."""
    from ..results.load import read_final_reports as read_reports

    done = []
    folder = local_folder(path)
    for params in sorted(folder.glob("*/params.json")) if folder is not None else []:
        reports = read_reports(params.parent)
        if _ended(reports):
            spec = json.loads(params.read_text())["trial"]
            # a batched phase's stacked trial (optuna_search.py): each member's values and score
            pairs = zip(spec["members"], reports[-1].get("members", [])) if "members" in spec else [(spec, reports[-1])]
            for member, values in pairs:
                stopped = int(values["task"]) if values.get("status") == "stopped" and values.get("task") else None
                score = _score(values, metric)
                done.append(EndedConfiguration(member["params"], score, stopped, member.get("method", "")))
    return done


def _score(values: dict[str, Any], metric: str) -> float:
    """A configuration's score as the trainable reports it (trainable._score): the metric, minus
    it where lower is better, -1 where it diverged or has none."""
    if values.get("score") is not None:
        return float(values["score"])
    value = values.get(metric)
    if values.get("status") != "finished" or not isinstance(value, int | float) or value != value:
        return -1.0
    return float(value) if values.get("higher_is_better", True) else -float(value)
