"""An S3 lake for tests: moto's S3 server, the landing files uploaded, a project over it."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml

from rcmlake.config import parse_config
from rcmlake.demo import demo_config
from rcmlake.project import Project
from rcmlake.storage import objects

SECRET = "s3cr3t-" + uuid.uuid4().hex  # must never appear in any output


def upload_landing(workdir: Path, bucket: str) -> list[str]:
    """Move the synthetic landing files into ``s3://bucket/landing`` (none stay local)."""
    landing = objects.folder(f"s3://{bucket}/landing")
    assert isinstance(landing, objects.RemoteFolder)
    import obstore

    keys = []
    for path in sorted((workdir / "landing").rglob("*")):
        if path.is_file() and "archive" not in path.parts:
            key = path.relative_to(workdir / "landing").as_posix()
            obstore.put(landing.store, key, path.read_bytes())
            path.unlink()
            keys.append(key)
    return keys


def s3_project(workdir: Path, bucket: str) -> Project:
    raw = yaml.safe_load(demo_config())
    raw["lake"] = f"s3://{bucket}/lake"
    raw["landing"] = f"s3://{bucket}/landing"
    for feed in raw["files"].values():
        feed["folder"] = feed["folder"].removeprefix("landing/")  # relative to the landing root
    raw["run"] = {"backoff_seconds": 0.01, "retries": 2, "lease_seconds": 5}
    (workdir / "rcmlake.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return Project(parse_config(raw, base_dir=workdir))
