"""Where evaluation units run: in this process, or on Ray actors that each hold one model replica.

A unit is a picklable payload and a module-level function `fn(model, unit) -> result`; the
backend returns results in unit order, whatever order the workers finish in, so the driver writes
the same bytes whichever backend computed them. On Ray a killed or failed actor is restarted
(Ray's `max_restarts`) and its in-flight units are retried (`max_task_retries`, then once more
by the driver on another actor); a unit whose function raises an `AdvgenError` is a user error
and is reported, never retried. Ray is an optional extra (`pip install advgen[ray]`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from tqdm.auto import tqdm

from advgen.core import options
from advgen.core.types import AdvgenError, Evaluation, PromptMetrics, PromptSet
from advgen.model.loading import LoadedModel, load_model
from advgen.model.validate import DEFAULT_BATCH, Measured, Read, check_prompts, measure, validate

BATCHES_PER_UNIT = 16
"""Batches per evaluation unit of `evaluate` (a unit is whole batches, so padding never changes)."""
UnitFn = Callable[[LoadedModel, Any], Any]
"""A module-level function (picklable by reference) run on one unit with a loaded model."""
BACKENDS = options.BACKENDS


class Backend(Protocol):
    """Runs units; `map` yields results in unit order and holds a bounded number in flight."""

    name: str

    def map(self, fn: UnitFn, units: Iterable[Any]) -> Iterator[Any]: ...

    def close(self) -> None: ...


class LocalBackend:
    """Units one after another in this process, on an already loaded model."""

    name = "local"

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    def map(self, fn: UnitFn, units: Iterable[Any]) -> Iterator[Any]:
        for u in units:
            yield fn(self.model, u)

    def close(self) -> None:
        pass


class _Replica:
    """A Ray actor's state: one model, loaded once per actor (and again after a restart)."""

    def __init__(self, spec: str, device: str, threads: int, dtype: str = "float32") -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = load_model(spec, device=device, dtype=dtype)

    def run(self, fn: UnitFn, unit: Any) -> Any:
        return fn(self.model, unit)

    def pid(self) -> int:
        return os.getpid()


@dataclass(frozen=True)
class RaySettings:
    """How to reach Ray and shape the actor pool."""

    workers: int = 2
    address: str | None = None
    """An existing cluster ("ray://host:10001" or "host:6379"); None starts a local instance."""
    gpus_per_worker: float | None = None
    """None: 1 GPU per actor when the cluster has GPUs, else CPU actors."""
    threads_per_worker: int | None = None
    """Torch threads per actor; None: the driver's own count, so a unit's floats are the bytes this process would
    compute (CPU kernels split their sums by thread count: 1 and 2 threads differ in the last bits)."""
    max_retries: int = 3
    in_flight: int = 2
    """Units queued per actor, so an actor never waits for the driver between units."""
    device: str = "auto"
    """--device: "cpu" keeps actors off GPUs; otherwise an actor given a GPU runs on it."""
    dtype: str = "float32"


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, Ray binds a node to 127.0.0.1 (single-node only), not the host's IP."""


def _ray(local: bool) -> Any:
    """Import Ray; for a private local instance, first ask it to stay on the loopback address."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError:
        raise AdvgenError("--backend ray needs Ray: pip install 'advgen[ray]'") from None
    return ray


class RayBackend:
    """A pool of actors, one model replica each; results come back in unit order.

    Besides `map`, a caller that knows its later units in advance (the attack: the random sample and the
    baseline while the search runs) can `prefetch` them: they run in the background on all but one actor,
    so the units the caller waits for (`take`, `map`) find a free actor. Every unit runs exactly as it would
    alone, so results do not depend on what ran beside it.
    """

    name = "ray"

    def __init__(self, model_spec: str, settings: RaySettings = RaySettings()) -> None:
        if settings.workers < 1:
            raise AdvgenError(f"--workers must be >= 1, got {settings.workers}")
        ray = self.ray = _ray(settings.address is None)
        if settings.threads_per_worker is None:
            import torch

            settings = replace(settings, threads_per_worker=torch.get_num_threads())
        self.settings = settings
        threads = settings.threads_per_worker or 1
        self.started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
            if settings.address is None:  # a private local instance (on the loopback address, see _ray)
                kw.update(num_cpus=settings.workers * threads)
            try:
                ray.init(address=settings.address or "local", **kw)  # "local": never attach to a cluster by accident
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise AdvgenError(f"could not connect to Ray at {settings.address!r}: {e}") from None
            self.started = True
        gpus = settings.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if settings.device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        device = "cuda" if gpus > 0 else "cpu"
        actor = ray.remote(
            num_cpus=threads, num_gpus=gpus, max_restarts=settings.max_retries, max_task_retries=settings.max_retries
        )(_Replica)
        self.actors = [actor.remote(model_spec, device, threads, settings.dtype) for _ in range(settings.workers)]
        self.device = device
        self.dead: set[int] = set()
        self.load = [0] * settings.workers
        self.jobs: dict[int, _Job] = {}
        """ticket -> unit not yet taken (queued, running, or finished and held)."""
        self.running: dict[Any, tuple[int, int]] = {}  # object ref -> (ticket, actor)
        self.queue: deque[int] = deque()  # prefetched tickets not yet submitted, in the order they will be taken
        self.background: set[int] = set()  # running tickets submitted by prefetch
        self.tickets = 0

    def worker_pids(self) -> list[int]:
        """OS process ids of the actors (tests kill one to check retries)."""
        return list(self.ray.get([a.pid.remote() for a in self.actors]))

    def map(self, fn: UnitFn, units: Iterable[Any]) -> Iterator[Any]:
        """Dispatch to idle actors, keep at most workers x in_flight units out, yield in order."""
        it, window, limit = iter(enumerate(units)), deque[int](), len(self.actors) * self.settings.in_flight
        while True:
            while len(window) < limit and (item := next(it, None)) is not None:
                window.append(self._new(fn, item[1], item[0]))
                self._submit(window[-1])
            if not window:
                return
            yield self.take(window.popleft())

    def prefetch(self, fn: UnitFn, units: Iterable[Any]) -> list[int]:
        """Queue units to run in the background, in this order; `take(ticket)` returns each one's result."""
        tickets = [self._new(fn, u, i) for i, u in enumerate(units)]
        self.queue.extend(tickets)
        self._pump()
        return tickets

    def take(self, ticket: int) -> Any:
        """The unit's result, waiting for it (and submitting it now if it has not started)."""
        job = self.jobs[ticket]
        if job.ref is None and job.result is _PENDING:
            self._submit(ticket)
        while job.result is _PENDING:
            self._wait_one()
        del self.jobs[ticket]
        return job.result

    def discard(self, tickets: Iterable[int]) -> None:
        """Forget prefetched units that will not be taken (queued ones never run; running ones are dropped)."""
        for t in tickets:
            self.jobs.pop(t, None)

    def _new(self, fn: UnitFn, unit: Any, index: int) -> int:
        self.tickets += 1
        self.jobs[self.tickets] = _Job(fn, unit, index)
        return self.tickets

    def _submit(self, ticket: int, background: bool = False) -> None:
        job = self.jobs[ticket]
        live = [k for k in range(len(self.actors)) if k not in self.dead]
        if not live:
            raise AdvgenError(f"every Ray worker is gone (unit {job.index} could not run); see the Ray logs")
        a = min(live, key=lambda k: (self.load[k], k))
        job.ref, job.actor = self.actors[a].run.remote(job.fn, job.unit), a
        self.running[job.ref] = (ticket, a)
        self.load[a] += 1
        if background:
            self.background.add(ticket)

    def _pump(self) -> None:
        """Keep prefetched units running on all actors but one (one each), so a unit waited for starts at once."""
        limit = max(1, len(self.actors) - len(self.dead) - 1)
        while self.queue and len(self.background) < limit:
            t = self.queue.popleft()
            job = self.jobs.get(t)
            if job is not None and job.ref is None:
                self._submit(t, background=True)

    def _wait_one(self) -> None:
        """Collect one finished unit; a unit of an actor gone for good goes to another actor."""
        [ref], _ = self.ray.wait(list(self.running), num_returns=1)
        t, a = self.running.pop(ref)
        self.background.discard(t)
        self.load[a] -= 1
        job = self.jobs.get(t)  # None: discarded
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            if job is None:
                return
            self.dead.add(a)  # Ray gives up on an actor only after its own restarts and retries
            if job.attempts >= self.settings.max_retries:
                raise AdvgenError(f"unit {job.index} failed on {job.attempts + 1} Ray workers: {e}") from None
            job.attempts, job.ref = job.attempts + 1, None
            self._submit(t)
            return
        except self.ray.exceptions.RayTaskError as e:
            if job is None:
                return
            cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
            if isinstance(cause, AdvgenError):
                raise cause from None
            raise AdvgenError(f"unit {job.index} failed on a Ray worker: {e}") from None
        finally:
            self._pump()
        if job is not None:
            job.result = result

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a, no_restart=True)
        self.actors = []
        if self.started:
            self.ray.shutdown()


_PENDING = object()
"""Marker: the unit's result has not arrived."""


@dataclass
class _Job:
    """One unit on its way through the pool (mutable: its ref and attempts change on a retry)."""

    fn: UnitFn
    unit: Any
    index: int
    """The unit's number in its map/prefetch call, for messages."""
    attempts: int = 0
    actor: int = -1
    ref: Any = None
    result: Any = _PENDING


def validate_unit(model: LoadedModel, unit: tuple[PromptSet, int]) -> tuple[PromptMetrics, ...]:
    """One unit of `evaluate`: the validator on whole batches, exactly as in one process."""
    prompts, batch_size = unit
    return validate(model, prompts, batch_size).metrics


def measure_unit(model: LoadedModel, unit: tuple[PromptSet, Sequence[Sequence[Read]], int]) -> Measured:
    """`measure` as a unit (prompts, per-prompt attention reads, batch size): the attack's evaluation phase."""
    prompts, reads, batch_size = unit
    return measure(model, prompts, reads, batch_size)


def evaluate(
    backend: Backend,
    prompts: PromptSet,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    model: LoadedModel | None = None,
) -> Evaluation:
    """`validate(model, prompts, batch_size)` run unit by unit on `backend`, with the same bytes.

    Units are runs of whole batches of the validator's own length-sorted batching, so every
    prompt is padded and batched exactly as in one process, whichever worker measures it.
    """
    if model is not None:
        check_prompts(model, prompts)
    order = [i for b in prompts.batches(batch_size) for i in b]
    step = batch_size * BATCHES_PER_UNIT
    spans = [order[a : a + step] for a in range(0, len(order), step)]
    units = ((PromptSet(tuple(prompts[i] for i in span), prompts.tokenizer_hash), batch_size) for span in spans)
    out: list[PromptMetrics | None] = [None] * len(prompts)
    results = backend.map(validate_unit, units)
    for span, metrics in tqdm(
        zip(spans, results, strict=False), total=len(spans), desc="validate", unit="unit", disable=not progress
    ):
        for i, m in zip(span, metrics, strict=True):
            out[i] = m
    return Evaluation(prompts, tuple(out))  # type: ignore[arg-type]


def make_backend(name: str, model_spec: str, model: LoadedModel | None = None, settings: RaySettings = RaySettings()) -> Backend:
    """`local` (loads `model_spec` here unless `model` is given) or `ray` (replicas on actors)."""
    if name == "local":
        return LocalBackend(model if model is not None else load_model(model_spec, settings.device, settings.dtype))
    if name == "ray":
        return RayBackend(model_spec, settings)
    raise AdvgenError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
