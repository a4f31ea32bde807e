"""The lake and its landing folders on S3: moto's S3 server on loopback, real HTTP, real
conditional writes. The pipeline there ends in the same lake as on a local folder, through
an update, a rollback, a killed run and two runs at once; credentials stay out of output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pytest
from scripts.kill_trials import differing

from rcmlake.errors import LakeLocked
from rcmlake.project import Project
from rcmlake.storage import objects
from rcmlake.storage.lease import Holder, Lease, current, lease_file
from rcmlake.synth import synthesize
from tests.conftest import make_project
from tests.integration.s3 import SECRET, s3_project, upload_landing


def s3_and_local(
    tmp_path: Path, synth_template: Path, bucket: str, names: tuple[str, str]
) -> tuple[Path, Project, Project]:
    """Two copies of the hospitals: one on an S3 lake and landing, one on a local folder."""
    s3_dir, local_dir = tmp_path / names[0], tmp_path / names[1]
    shutil.copytree(synth_template, s3_dir)
    shutil.copytree(synth_template, local_dir)
    upload_landing(s3_dir, bucket)
    return s3_dir, s3_project(s3_dir, bucket), make_project(local_dir)


def rcmlake(cwd: Path, *args: str, faults: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rcmlake", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RCMLAKE_FAULTS": faults},
    )


def test_pipeline_update_and_rollback_on_s3_equal_a_local_lake(
    tmp_path: Path, synth_template: Path, bucket: str
) -> None:
    local_dir, s3_dir = tmp_path / "local", tmp_path / "s3"
    shutil.copytree(synth_template, local_dir)
    shutil.copytree(synth_template, s3_dir)
    local = make_project(local_dir, run={"lease_seconds": 5})
    sent = upload_landing(s3_dir, bucket)
    remote = s3_project(s3_dir, bucket)
    landing = objects.folder(f"s3://{bucket}/landing")

    assert remote.run().exit_code == 0
    assert local.run().exit_code == 0
    assert differing(remote, local) == []
    assert remote.lake.exists("gold/mart_kpi_monthly")
    # every landing file was read from S3 and archived there
    assert landing.list("claims", "*.csv") == []
    archived = landing.list("archive", "*/*")
    assert sorted(archived) == sorted(f"archive/{k}" for k in sent)

    # an update: new rows in the sources, new claims files in the S3 landing folder
    synthesize(s3_dir, update=True)
    synthesize(local_dir, update=True)
    new = upload_landing(s3_dir, bucket)
    assert new, "the update writes new claims files"
    update = remote.run()
    assert update.exit_code == 0
    assert local.run().exit_code == 0
    assert differing(remote, local) == []

    # rolling the update back returns its files from archive/ to their folder on S3 …
    remote.rollback(update.run_id)
    assert sorted(landing.list("claims", "*.csv")) == sorted(
        k for k in new if k.startswith("claims/")
    )
    assert remote.lake.read("gold/mart_kpi_monthly").num_rows > 0
    # … and the run after it loads them again, to the same lake
    assert remote.run().exit_code == 0
    assert differing(remote, local) == []
    assert remote.lock_holder() is None  # the lease was released


def test_killed_run_on_s3_is_taken_over_and_ends_as_a_clean_run(
    tmp_path: Path, synth_template: Path, bucket: str
) -> None:
    crashed_dir, crashed, clean = s3_and_local(
        tmp_path, synth_template, bucket, ("crashed", "clean")
    )

    killed = rcmlake(crashed_dir, "run", faults="silver.after_commit:4")
    out, err = killed.communicate(timeout=600)
    assert killed.returncode == -9, err
    # the dead run's lease is still in the bucket, naming it …
    holder_left = objects.folder(f"s3://{bucket}/lake")
    assert holder_left.exists("_lease.json")
    # … and is taken over at once: its process is gone from this host
    status = rcmlake(crashed_dir, "run")
    out2, err2 = status.communicate(timeout=600)
    assert status.returncode == 0, err2
    assert clean.run().exit_code == 0
    assert differing(crashed, clean) == []
    for text in (out, err, out2, err2):
        assert SECRET not in text


def test_two_runs_at_once_on_s3_one_writes_and_nothing_doubles(
    tmp_path: Path, synth_template: Path, bucket: str
) -> None:
    work, project, clean = s3_and_local(tmp_path, synth_template, bucket, ("work", "clean"))

    first = rcmlake(work, "run")
    deadline = time.monotonic() + 60
    while current(project.lake.root) is None:  # the first run holds the lease …
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = rcmlake(work, "run")  # … so the second is refused, naming it
    out2, err2 = second.communicate(timeout=600)
    out1, err1 = first.communicate(timeout=600)
    assert first.returncode == 0, err1
    assert second.returncode == 1
    assert "lake lease" in out2 + err2 and "held by" in out2 + err2
    # two more started together: whichever wins, the other is refused or finds nothing new
    racers = [rcmlake(work, "run"), rcmlake(work, "run")]
    codes = [r.wait(timeout=600) for r in racers]
    assert 0 in codes and set(codes) <= {0, 1}
    assert clean.run().exit_code == 0
    assert differing(project, clean) == []  # bronze included: no row appended twice
    for text in (out1, err1, out2, err2, *(r.communicate()[0] for r in racers)):
        assert SECRET not in text
    status = rcmlake(work, "status")
    assert SECRET not in "".join(status.communicate(timeout=120))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_lease_excludes_expires_and_fences(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    root = (
        str(tmp_path / "lake")
        if where == "local"
        else f"s3://{request.getfixturevalue('bucket')}/lake"
    )
    # the compare-and-swap underneath: a lost race is None, not an error
    file = lease_file(root)
    first = file.create(b"{}")
    assert first is not None and file.create(b"{}") is None
    assert file.replace(b'{"x": 1}', first) is not None
    assert file.replace(b'{"x": 2}', first) is None  # a stale tag
    a = Lease(root, owner="airflow:rcmlake:run-1", ttl=1.5, process_bound=False)
    b = Lease(root, owner="run-b", ttl=1.5, process_bound=True)
    a.acquire()
    a.acquire()  # the owner again (another task of the same DAG run): renewed, not refused
    with pytest.raises(LakeLocked, match="held by airflow:rcmlake:run-1"):
        b.acquire()
    who = current(root)
    assert who is not None and who.owner == "airflow:rcmlake:run-1" and who.pid is None
    time.sleep(1.6)  # a's holder stopped renewing (killed): the lease expires …
    assert current(root) is None
    b.acquire()  # … and is taken over
    assert not a.renew()  # a learns it lost the lease at its next renewal …
    with pytest.raises(LakeLocked, match="lost the lake lease to run-b"):
        a.check()  # … and stops before its next commit
    a.release()  # releasing a lease one no longer holds changes nothing
    assert current(root) is not None and current(root).owner == "run-b"  # type: ignore[union-attr]
    b.release()
    assert current(root) is None
    with b.held():  # the heartbeat keeps a held lease alive past its time to live
        time.sleep(2.0)
        b.check()
        assert current(root) is not None
    assert current(root) is None


def test_lost_lease_stops_the_run_before_its_next_commit(tmp_path: Path, bucket: str) -> None:
    project = s3_project(tmp_path, bucket)
    root = project.lake.root
    with project.writing():
        # another run takes the lease over (as if this one had been paused past its expiry)
        file = lease_file(root)
        _, tag = file.read()
        taken = Holder("intruder", "elsewhere", None, "now", time.time() + 60)
        assert file.replace(json.dumps(asdict(taken)).encode(), tag or "") is not None
        time.sleep(2.5)  # the heartbeat (every lease_seconds / 3) finds out
        with pytest.raises(LakeLocked, match="lost the lake lease to intruder"):
            project.lake.write("bronze/x/y", pa.table({"a": [1]}))
    assert not project.lake.exists("bronze/x/y")
    who = current(root)
    assert who is not None and who.owner == "intruder"  # nobody else's lease is released


@pytest.mark.parametrize("where", ["local", "s3"])
def test_remove_tree_deletes_a_folder_and_only_it(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A session's scratch folder (``SparkSessionOnConnect.close``) goes with all it holds;
    its neighbours stay, and a folder already gone is no error."""
    root = str(tmp_path) if where == "local" else f"s3://{request.getfixturevalue('bucket')}/lake"
    lake = objects.folder(root)
    for key in ("_scratch/s1/1-a/part-0.parquet", "_scratch/s1/2-b/part-0.parquet"):
        lake.write_text(key, "x")
    lake.write_text("_scratch/s2/1-a/part-0.parquet", "kept")
    objects.remove_tree(objects.join(root, "_scratch/s1"))
    assert lake.list("_scratch", "*/*/*") == ["_scratch/s2/1-a/part-0.parquet"]
    objects.remove_tree(objects.join(root, "_scratch/s1"))  # nothing there: no error
