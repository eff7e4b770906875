"""Read back what an offline W&B run recorded (run id, group, name, config), from its ``run-<id>.wandb`` file.

wandb ≥ 0.19 writes the records from its Go core and ships no Python reader, so this parses the file
format directly: a leveldb-style log (32 KiB blocks, 7-byte chunk headers) of ``wandb_internal_pb2.Record``s.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, out, buf = 7, [], b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # block trailer too short for a header: skip to the next block
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            buf = chunk
        elif kind == MIDDLE:
            buf += chunk
        elif kind == LAST:
            out.append(buf + chunk)
            buf = b""
    parsed = []
    for raw in out:
        rec = pb.Record()
        rec.ParseFromString(raw)
        parsed.append(rec)
    return parsed


def finished_records(path: Path, timeout: float = 60.0) -> list:
    """The run's records once its ``exit`` record is on disk: ``run.finish()`` can return before wandb's core
    process has written the last history rows, so a reader must wait for the record that comes last."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        recs = records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in recs) or time.monotonic() > deadline:
            return recs
        time.sleep(0.2)


def manifest_files(manifest) -> dict:
    """An artifact manifest's entries, path -> the staged local copy (the manifest may sit in its own JSON file)."""
    if manifest.contents:
        return {e.path: e.local_path or None for e in manifest.contents}
    if manifest.manifest_file_path:
        entries = json.loads(Path(manifest.manifest_file_path).read_text()).get("contents", {})
        return {k: v.get("local_path") for k, v in entries.items()} if isinstance(entries, dict) else \
            {e["path"]: e.get("local_path") for e in entries}
    return {}


def read_run(run_dir: Path) -> dict:
    """{id, group, name, job_type, config, history, artifacts} of the single offline run under ``run_dir``;
    ``history`` is the list of logged rows (dicts of key → value)."""
    (path,) = run_dir.glob("offline-run-*/run-*.wandb")
    return read_run_file(path)


def read_run_segments(run_dir: Path) -> list[dict]:
    """Each offline run under ``run_dir`` in start order, as :func:`read_run` reads it: a job that was killed and
    resumed leaves one per attempt (W&B cannot append to an offline run), all with the job's run id. A killed
    attempt has no exit record, so it is read as it is, without waiting for one."""
    paths = sorted(run_dir.glob("offline-run-*/run-*.wandb"))
    return [read_run_file(p, wait=p == paths[-1]) for p in paths]


def read_run_file(path: Path, wait: bool = True) -> dict:
    info: dict = {"config": {}, "history": [], "artifacts": []}
    for rec in finished_records(path) if wait else records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "artifact":  # {name, type, metadata, files: {path: local staged copy or None}}
            art = rec.artifact
            info["artifacts"].append({"name": art.name, "type": art.type, "metadata": json.loads(art.metadata or "{}"),
                                      "files": manifest_files(art.manifest)})
            continue
        if kind == "history":
            info["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                    for item in rec.history.item})
            continue
        if kind == "run":
            info.update(id=rec.run.run_id, group=rec.run.run_group, name=rec.run.display_name,
                        job_type=rec.run.job_type)
            items = rec.run.config.update
        elif kind == "config":
            items = rec.config.update
        else:
            continue
        for item in items:
            info["config"][item.key] = json.loads(item.value_json)
    return info
