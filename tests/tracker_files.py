"""Readers for what the trackers leave on disk, for the tests: TensorBoard event files (through
TensorBoard's own event reader) and W&B's offline ``.wandb`` files (wandb 0.31 keeps no Python
reader: the file is a LevelDB-style log of protobuf records, read here with wandb's own protos)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WANDB_BLOCK = 32768  # the log's block size; a record never straddles a 7-byte block tail
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def tensorboard_run(folder: Path) -> dict[str, Any]:
    """One TensorBoard run: {"scalars": {tag: [(step, value)]}, "hparams": {name: value}}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(folder))
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    hparams: dict[str, Any] = {}
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            for name, value in data.session_start_info.hparams.items():
                hparams[name] = value.number_value if value.HasField("number_value") else value.string_value
    return {"scalars": scalars, "hparams": hparams}


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of one offline W&B run file (``run-ID.wandb``)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B", f"{path} is not a W&B transaction log"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if WANDB_BLOCK - position % WANDB_BLOCK < 7:  # a block's tail too short for a header: padding
            position += WANDB_BLOCK - position % WANDB_BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (FULL, LAST):
            yield wandb_internal_pb2.Record.FromString(pending + chunk)
            pending = b""
        elif kind in (FIRST, MIDDLE):
            pending += chunk


def wandb_run(path: Path) -> dict[str, Any]:
    """One offline W&B run: its name, group, config, history rows (by step) and final summary."""
    run: dict[str, Any] = {"history": {}, "summary": {}, "config": {}}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(name=record.run.display_name, group=record.run.run_group, tags=list(record.run.tags))
            run["config"] = {i.key: json.loads(i.value_json) for i in record.run.config.update if i.key != "_wandb"}
        elif kind == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            run["history"][int(row["_step"])] = {k: v for k, v in row.items() if not k.startswith("_")}
        elif kind == "summary":
            run["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in record.summary.update})
    return run
