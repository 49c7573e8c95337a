"""Generation as rollouts on datatrove's inference runner: each unit of work (a planned conversation, a tool
question, a self-instruct request, a judge request) is one asynchronous rollout that calls the model as many times
as it needs (turns, retries, tool execution in between), so the server always has up to ``max_concurrent``
requests in flight and never waits for the slowest member of a batch.

- :class:`GenerationConfig`: the ``generation:`` block of dialogue and feedback recipes: a backend per role
  (assistant, user simulator, judge), how many requests and rollouts are in flight, checkpoint chunking, and the
  executor (local, Slurm, Ray: datatrove's, each task with its own server or all sharing an endpoint).
- :class:`RolloutLLM`: what a rollout calls: ``await llm.chat(messages, params, role=...)`` gives a
  :class:`Generation`; a request that failed after the runner's retries comes back as ``finish_reason="error"``
  (the caller's checks quarantine it), never as an exception that would end the task.
- :func:`run_rollouts`: writes the work items as the job's input, runs datatrove's :class:`InferenceRunner` on the
  executor, waits, and returns every item's result by id.

Resume (kill -9 included) is datatrove's: finished chunks of ``records_per_chunk`` results are final; the chunk in
progress is rebuilt from its local checkpoint; requests already answered in unfinished rollouts are replayed from
the request cache (sqlite), so a resumed rollout takes the same path without asking the model again. A finished job
is skipped on a re-run (datatrove's completion markers). Every input id ends with exactly one result: a rollout
that raises is caught here and returned as ``{"status": "error", ...}`` (counted), not lost.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import time
from pathlib import Path
from typing import Awaitable, Callable

import orjson
import xxhash
from datatrove.data import Document
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.inference.types import InferenceError, ServerError
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from loguru import logger
from pydantic import Field

from moss_data.executors import ExecutorConfig, build_executor
from moss_data.io.atomic import atomic_write
from moss_data.llm import openai_api
from moss_data.llm.base import Generation, SamplingParams
from moss_data.llm.config import BackendConfig
from moss_data.llm.servers import ROLES, RoleRouter
from moss_data.plan import Job
from moss_data.recipe import StrictModel


class GenerationConfig(StrictModel):
    assistant: BackendConfig = BackendConfig()
    user: BackendConfig | None = Field(None, description="the user simulator's model (default: the assistant's)")
    judge: BackendConfig | None = Field(None, description="the feedback judge's model (default: the assistant's)")
    max_concurrent: int = Field(64, ge=1, description="requests in flight per task (the server batches them)")
    max_concurrent_rollouts: int | None = Field(None, ge=1, description="rollouts in flight per task "
                                                "(default: max_concurrent)")
    records_per_chunk: int = Field(500, ge=1, description="results per output chunk; a finished chunk survives a "
                                                         "kill, the one in progress is rebuilt from its checkpoint")
    request_timeout_s: float = Field(600, gt=0)
    executor: ExecutorConfig = ExecutorConfig(tasks=1)

    def roles(self) -> dict[str, BackendConfig]:
        return {"assistant": self.assistant, "user": self.user or self.assistant,
                "judge": self.judge or self.assistant}

    def labels(self) -> dict[str, str]:
        """Provenance: which model played which role."""
        return {role: backend.label for role, backend in self.roles().items()}


class RolloutLLM:
    """The model as a rollout sees it: one request per call, routed to the role's backend."""

    def __init__(self, generate: Callable[[dict], Awaitable], roles: dict[str, BackendConfig]):
        self._generate = generate
        self._roles = roles

    def supports_json_schema(self, role: str) -> bool:
        backend = self._roles[role]
        return backend.kind == "vllm" or (backend.kind == "http" and backend.structured_outputs)

    def kind(self, role: str) -> str:
        return self._roles[role].kind

    async def chat(self, messages: list[dict], params: SamplingParams, role: str = "assistant") -> Generation:
        return await self._send(openai_api.chat_body(messages, params), params, role)

    async def _send(self, body: dict, params: SamplingParams, role: str) -> Generation:
        if role not in self._roles:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if params.json_schema is not None and not self.supports_json_schema(role):
            body.pop("response_format", None)
        try:
            result = await self._generate(body | {"role": role})
        except InferenceError as e:
            return Generation(text="", finish_reason="error", error=str(e.error)[:500])
        return openai_api.generation_of(result.text, result.finish_reason, result.usage, params)


Rollout = Callable[..., Awaitable[dict]]


async def guarded_rollout(document: Document, generate, *, rollout: Rollout, roles: dict, **context) -> dict:
    """Runs one rollout; whatever it raises (a bug, a tool gone wrong) becomes an ``error`` result for this item
    alone. A dead server (ServerError) and cancellation still end the task: its work resumes on the next run."""
    llm = RolloutLLM(generate, roles)
    try:
        result = await rollout(document.metadata["item"], llm, **context)
    except (ServerError, asyncio.CancelledError):
        raise
    except Exception as e:  # noqa: BLE001
        logger.exception(f"rollout {document.id} failed")
        return {"status": "error", "reason": "rollout_error", "raw": f"{type(e).__name__}: {e}"[:2000]}
    return result


class RolloutRunner(InferenceRunner):
    """datatrove's runner with our servers (one per role's backend, see :class:`RoleRouter`) and a progress bar
    per task (rollouts finished of the task's items; a resumed task starts at what it had finished)."""

    def __init__(self, *args, roles: dict[str, BackendConfig], totals: list[int], desc: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.roles = roles
        self.totals = totals
        self.desc = desc
        self._bar = None

    def _init_server(self, rank: int):
        return RoleRouter(self.config, rank, self.roles)

    async def _save_document(self, document, output_writer_context, rank, chunk_index, count_processed_stat=True):
        await super()._save_document(document, output_writer_context, rank, chunk_index, count_processed_stat)
        if self._bar is not None:
            self._bar.update()

    def run(self, data, rank: int = 0, world_size: int = 1) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=self.totals[rank], desc=f"{self.desc} (task {rank})", unit="rollout")
        try:
            super().run(data, rank, world_size)
        finally:
            self._bar.close()
            self._bar = None


def _item_adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
    return {"text": data["id"], "id": data["id"], "metadata": {"item": data["item"]}}  # datatrove skips empty text


def run_rollouts(name: str, items: dict[str, dict], rollout: Rollout, work_dir: Path, generation: GenerationConfig,
                 context: Callable[[], dict] | None = None, timeout_s: float = 24 * 3600) -> dict[str, dict]:
    """Runs ``rollout(item, llm, **context())`` for every item (id -> JSON-able item) on datatrove's inference
    runner and returns id -> result. ``rollout`` and ``context`` must be module-level functions (or partials of
    them): Slurm and Ray tasks unpickle them in other processes. ``context`` builds what every rollout of a task
    shares (templates, a language identifier, a search index) once per task."""
    work = Path(work_dir) / name
    tasks = min(generation.executor.tasks, max(1, len(items)))
    _fresh_work_for(work, items, tasks)
    _write_inputs(work / "input", items, tasks)
    roles = generation.roles()
    config = InferenceConfig(
        server_type="custom", model_name_or_path=name, use_chat=True,
        max_concurrent_generations=generation.max_concurrent,
        max_concurrent_documents=generation.max_concurrent_rollouts or generation.max_concurrent,
        request_timeout=generation.request_timeout_s, metric_interval=60,
        server_log_folder=str(work / "server_logs"))
    runner = RolloutRunner(
        functools.partial(guarded_rollout, rollout=rollout, roles=roles),
        config,
        JsonlWriter(str(work / "output"), output_filename="${rank}_chunk_${chunk_index}.jsonl", compression=None,
                    expand_metadata=False),
        shared_context=context,
        checkpoints_local_dir=str(work / "checkpoints"),
        records_per_chunk=generation.records_per_chunk,
        roles=roles,
        totals=[len(range(task, len(items), tasks)) for task in range(tasks)],
        desc=name,
    )
    reader = JsonlReader(str(work / "input"), compression=None, adapter=_item_adapter, shuffle_files=False)
    job = Job(f"generate-{name}", [reader, runner], tasks=tasks)
    executor = build_executor(generation.executor, job, str(work / "runner_logs"))
    logger.info(f"{name}: {len(items)} rollouts on {tasks} {generation.executor.kind} task(s)")
    executor.run()
    wait_for_tasks(executor, tasks, timeout_s)
    return read_results(work / "output", set(items))


def _fresh_work_for(work: Path, items: dict[str, dict], tasks: int) -> None:
    """A work folder belongs to one input: a killed run resumes it (same items, same order); other items (a step
    whose cached part grew, an edited plan) start a fresh one, since datatrove's resume skips by position and its
    completion markers would skip the new work."""
    fingerprint = xxhash.xxh3_128_hexdigest(orjson.dumps([tasks, list(items.items())]))
    marker = work / "input.fingerprint"
    if marker.exists() and marker.read_text() != fingerprint:
        logger.info(f"{work}: its items changed since it was made; starting it afresh")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        atomic_write(marker, fingerprint.encode())


def _write_inputs(folder: Path, items: dict[str, dict], tasks: int) -> None:
    """Item i goes to file i % tasks (datatrove's reader gives each task its files). Written in the same order on
    every run: datatrove's resume skips the first k finished records of each task by position."""
    folder.mkdir(parents=True, exist_ok=True)
    lines: list[list[bytes]] = [[] for _ in range(tasks)]
    for i, (item_id, item) in enumerate(items.items()):
        lines[i % tasks].append(orjson.dumps({"id": item_id, "item": item}) + b"\n")
    for task, chunk in enumerate(lines):
        atomic_write(folder / f"part_{task:05d}.jsonl", b"".join(chunk))
    for stale in folder.glob("part_*.jsonl"):
        if int(stale.stem.split("_")[1]) >= tasks:
            stale.unlink()


def wait_for_tasks(executor, tasks: int, timeout_s: float, poll_s: float = 2.0) -> None:
    """Returns once every task has its completion marker. Local and Ray executors return when done; Slurm's
    returns at submission, so this follows the job in ``squeue`` and raises when it left with tasks unfinished."""
    deadline = time.monotonic() + timeout_s
    while True:
        incomplete = executor.get_incomplete_ranks(range(tasks))
        if not incomplete:
            return
        job_id = getattr(executor, "job_id", None)
        if job_id is None or not _slurm_job_alive(job_id):
            logs = Path(executor.logging_dir.path)
            raise RuntimeError(f"generation tasks {incomplete} did not finish; their logs are in {logs} (a re-run "
                               "resumes: finished results are kept)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"generation job {job_id} still running after {timeout_s:.0f} s")
        time.sleep(poll_s)


def _slurm_job_alive(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=30)
    return bool(out.stdout.strip())


def read_results(folder: Path, expected: set[str]) -> dict[str, dict]:
    """id -> result from the runner's output chunks. An id met twice keeps its first result and is logged (the
    tests assert it never happens); an expected id without a result is an error (the job did not finish)."""
    results: dict[str, dict] = {}
    duplicates = 0
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            doc = orjson.loads(line)
            if doc["id"] in results:
                duplicates += 1
                continue
            rollouts = doc["metadata"].get("rollout_results") or [{"status": "error", "reason": "no_result"}]
            results[doc["id"]] = rollouts[0]
    if duplicates:
        logger.warning(f"{folder}: {duplicates} results written twice (the first kept)")
    missing = expected - set(results)
    if missing:
        raise RuntimeError(f"{folder}: {len(missing)} items have no result (e.g. {sorted(missing)[:3]}); re-run to "
                           "resume")
    return {k: v for k, v in results.items() if k in expected}
