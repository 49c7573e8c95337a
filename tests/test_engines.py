"""datatrove pipelines really run on a one-node Slurm cluster and on a local Ray (tests/engines.py), two chained
stages each (``depends=``), and give byte for byte what the local executor gives on the same input.

Input: ten modules of this interpreter's standard library as documents. Stage 1 drops the ones that ``import re``
(datatrove's RegexFilter); stage 2 replaces e-mail addresses (datatrove's PIIFormatter). Only datatrove's own steps
run in the jobs: a Slurm job unpickles the executor in a fresh ``launch_pickled_pipeline`` process, where a function
defined in this test module could not be imported.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import os
import re
import subprocess
import sysconfig
import time
import uuid
from pathlib import Path

import pytest
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
from datatrove.pipeline.filters import RegexFilter
from datatrove.pipeline.formatters import PIIFormatter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from engines import SlurmJobError, wait_for_slurm_jobs  # noqa: E402


STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Five with e-mail addresses and no `import re`, five with `import re`: both stages change something.
MODULES = ("getopt.py", "bz2.py", "hashlib.py", "codecs.py", "uuid.py",
           "csv.py", "fnmatch.py", "shlex.py", "base64.py", "textwrap.py")
IMPORTS_RE = r"(?m)^import re$"
TASKS = 2


def stage1(src: Path, out: Path) -> list:
    return [JsonlReader(str(src)), RegexFilter(IMPORTS_RE), JsonlWriter(str(out))]


def stage2(src: Path, out: Path) -> list:
    return [JsonlReader(str(src)), PIIFormatter(), JsonlWriter(str(out))]


def shard_texts(folder: Path) -> dict[str, bytes]:
    """Every output shard, decompressed (gzip headers carry a timestamp; the documents must match byte for byte)."""
    return {p.name: gzip.decompress(p.read_bytes()) for p in sorted(folder.glob("*.jsonl.gz"))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two JSONL input files (one per task) of real documents."""
    folder = tmp_path_factory.mktemp("engines_input")
    for part in range(TASKS):
        with open(folder / f"part_{part}.jsonl", "w") as f:
            for name in MODULES[part::TASKS]:
                text = (STDLIB / name).read_text(encoding="utf-8")
                f.write(json.dumps({"id": name, "text": text, "metadata": {"source": "stdlib"}}) + "\n")
    return folder


@pytest.fixture(scope="module")
def local_reference(corpus, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("engines_local")
    first = LocalPipelineExecutor(stage1(corpus, root / "s1"), tasks=TASKS, workers=1, logging_dir=str(root / "l1"))
    second = LocalPipelineExecutor(stage2(root / "s1", root / "s2"), tasks=TASKS, workers=1,
                                   logging_dir=str(root / "l2"), depends=first)
    second.run()
    ref = {"s1": shard_texts(root / "s1"), "s2": shard_texts(root / "s2")}
    kept = [json.loads(line)["id"] for blob in ref["s1"].values() for line in blob.splitlines()]
    assert sorted(kept) == sorted(m for m in MODULES if not re.search(IMPORTS_RE, (STDLIB / m).read_text()))
    assert 0 < len(kept) < len(MODULES)
    assert ref["s1"] != ref["s2"] and b"@example." in b"".join(ref["s2"].values())  # e-mails were replaced
    return ref


# ----------------------------------------------------------------------------------------------------------- Slurm


def slurm_stages(cluster, first_pipeline, second_pipeline, root: Path, tasks: int = TASKS):
    tag = uuid.uuid4().hex[:8]
    common = dict(tasks=tasks, time="00:05:00", partition=cluster.partition, cpus_per_task=1, mem_per_cpu_gb=1,
                  venv_path=cluster.venv_activate)
    first = SlurmPipelineExecutor(first_pipeline, job_name=f"moss-eng-{tag}-1", logging_dir=str(root / "l1"), **common)
    second = SlurmPipelineExecutor(second_pipeline, job_name=f"moss-eng-{tag}-2", logging_dir=str(root / "l2"),
                                   depends=first, **common)
    return first, second


def test_slurm_runs_chained_datatrove_stages(slurm_cluster, corpus, local_reference, tmp_path):
    first, second = slurm_stages(slurm_cluster, stage1(corpus, tmp_path / "s1"),
                                 stage2(tmp_path / "s1", tmp_path / "s2"), tmp_path)
    second.run()  # submits both (the dependency first) and returns: nothing has run yet
    assert first.job_id and second.job_id and int(second.job_id) > int(first.job_id)
    assert not (tmp_path / "s2").exists()
    jobs = wait_for_slurm_jobs([first.job_id, second.job_id], timeout_s=120,
                               logging_dirs=[tmp_path / "l1", tmp_path / "l2"])

    # Two array jobs of two tasks each ran on this cluster, plus datatrove's merge-stats job per stage.
    for job_id in (first.job_id, second.job_id):
        job = jobs[str(job_id)]
        assert job.seen_in_squeue and job.partition == slurm_cluster.partition
        assert sorted(job.states) == [f"{job_id}_{i}" for i in range(TASKS)]
        assert set(job.states.values()) == {"COMPLETED"}
    merge_jobs = [j for j in jobs.values() if j.job_id not in (str(first.job_id), str(second.job_id))]
    assert len(merge_jobs) == 2 and all(j.ok for j in merge_jobs)
    for logs in (tmp_path / "l1", tmp_path / "l2"):
        assert json.loads((logs / "stats.json").read_text())  # written by the merge-stats job
        # Slurm's own output files (%A_%a.out, the merge-stats job's too): the srun-launched task logged success.
        job_id = first.job_id if logs.name == "l1" else second.job_id
        outs = sorted((logs / "slurm_logs").glob(f"{job_id}_*.out"))
        assert len(outs) == TASKS and all("Processing done for rank=" in o.read_text() for o in outs)

    assert shard_texts(tmp_path / "s1") == local_reference["s1"]
    assert shard_texts(tmp_path / "s2") == local_reference["s2"]


def test_slurm_failed_upstream_raises_and_cancels_dependents(slurm_cluster, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jsonl.gz").write_bytes(b"this is not gzip\n")  # the reader raises BadGzipFile in the job
    first, second = slurm_stages(slurm_cluster, [JsonlReader(str(bad)), JsonlWriter(str(tmp_path / "s1"))],
                                 [JsonlReader(str(tmp_path / "s1")), JsonlWriter(str(tmp_path / "s2"))],
                                 tmp_path, tasks=1)
    second.run()
    started = time.monotonic()
    with pytest.raises(SlurmJobError) as err:
        wait_for_slurm_jobs([first.job_id, second.job_id], timeout_s=90,
                            logging_dirs=[tmp_path / "l1", tmp_path / "l2"])
    assert time.monotonic() - started < 90
    message = str(err.value)
    assert f"job {first.job_id}" in message and "FAILED" in message
    assert "DependencyNeverSatisfied" in message and str(second.job_id) in message
    assert "BadGzipFile" in message or "not a gzipped file" in message.lower()  # the datatrove task log tail
    queued = subprocess.run(["squeue", "-h", "-o", "%F"], capture_output=True, text=True, check=True).stdout.split()
    assert str(first.job_id) not in queued and str(second.job_id) not in queued
    state = subprocess.run(["scontrol", "show", "job", "-o", str(second.job_id)], capture_output=True, text=True)
    assert "JobState=CANCELLED" in state.stdout


def test_slurm_wait_is_bounded_by_its_timeout(slurm_cluster, tmp_path):
    job_id = subprocess.run(["sbatch", "--parsable", "-p", slurm_cluster.partition, "-o", str(tmp_path / "%j.out"),
                             "--wrap", "sleep 300"], capture_output=True, text=True, check=True).stdout.strip()
    started = time.monotonic()
    with pytest.raises(SlurmJobError, match="still queued after 3 s"):
        wait_for_slurm_jobs([job_id], timeout_s=3)
    assert time.monotonic() - started < 10
    time.sleep(1)
    state = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    assert "JobState=CANCELLED" in state


# ------------------------------------------------------------------------------------------------------------- Ray


def listening_addresses(pids: set[int]) -> list[str]:
    """Listening TCP addresses (ip:port) owned by these processes, read from /proc (what `ss -ltnp` shows)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = cols[1].split(":")
            raw = bytes.fromhex(hex_ip)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # per 32-bit word, host order
            ip = ipaddress.ip_address(raw)
            if v6 and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found.append(f"{ip}:{int(hex_port, 16)}")
    return found


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


@pytest.mark.timeout(150)
def test_ray_runs_chained_datatrove_stages(ray_cluster, corpus, local_reference, tmp_path):
    from datatrove.executor.ray import RayPipelineExecutor

    ray = ray_cluster
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    # Ray's processes (GCS, raylet, agents, workers) are this process's descendants: all must listen on loopback.
    addresses = listening_addresses(descendants(os.getpid()) | {os.getpid()})
    assert addresses and all(a.startswith("127.") for a in addresses), addresses

    common = dict(tasks=TASKS, cpus_per_task=1, mem_per_cpu_gb=0.5)
    first = RayPipelineExecutor(stage1(corpus, tmp_path / "s1"), logging_dir=str(tmp_path / "l1"), **common)
    second = RayPipelineExecutor(stage2(tmp_path / "s1", tmp_path / "s2"), logging_dir=str(tmp_path / "l2"),
                                 depends=first, **common)
    # A failed upstream would make `second` poll forever (every 2 min): pytest-timeout bounds this test.
    second.run()

    for logs in (tmp_path / "l1", tmp_path / "l2"):
        # stats.json is merged by the Ray executor only once every Ray task reported success.
        assert json.loads((logs / "stats.json").read_text())
        assert sorted(p.name for p in (logs / "completions").iterdir()) == [f"{r:05d}" for r in range(TASKS)]
        for rank in range(TASKS):
            assert f"Processing done for rank={rank}" in (logs / "logs" / f"task_{rank:05d}.log").read_text()
    # datatrove's RankWorker actors ran in Ray worker processes of this cluster (Ray's per-worker logs name them).
    logs_dir = Path(ray._private.worker._global_node.get_logs_dir_path())
    actors = [p for p in logs_dir.glob("worker-*.out") if ":actor_name:RankWorker" in p.read_text(errors="replace")]
    assert len(actors) >= TASKS, sorted(p.name for p in logs_dir.glob("worker-*"))
    assert shard_texts(tmp_path / "s1") == local_reference["s1"]
    assert shard_texts(tmp_path / "s2") == local_reference["s2"]
