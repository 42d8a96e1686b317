"""The Ray engine: readers as Ray CPU tasks, the backbone in a pool of restartable actors, rows back to
the driver, which writes the shards and the one HDF5 file exactly as the local engine does.

    driver (extract / predict)        Ray cluster
    batches not yet done  ------->    read task (our ImageReader: hash, decode, align, transform, crop)
                                        -> small meta (rows, hashes, skip reasons) + uint8 crops
    least-loaded actor    ------->    model actor (backbone built from the BackboneSpec, normalise,
                                        forward; fp16 autocast on CUDA) -> float32 features
    BatchResult per batch <-------    (any order; the driver writes shard k once)

Why Ray Core tasks and actors rather than Ray Data `map_batches`: exactly-once. Each batch is one read
task and one actor call whose result resolves once or raises. The driver resubmits a batch only when
its call raised (the actor died: `RayActorError`; its input was lost: `ObjectLostError`), and a call
that raised delivered nothing, so every batch is delivered once; the driver also drops a batch number
it has already delivered, and the shard store names shards by batch number. Ray Data would retry
failed streaming tasks on its own, with its own block boundaries and its own backpressure, which we
would then have to regroup and de-duplicate; here the unit of retry is our batch, the same unit the
shard store resumes by, and the window of batches in flight (so the memory) is ours to bound.
`ray.data.read_images` is not used: it aborts the whole job on one corrupt file, where our reader
records a skip reason and goes on.

Ray is imported only here and only when the engine is used (`pip install 'deepfake-cli[ray]'`).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import time
import warnings
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.inference.reader import collate
from deepfake_cli.inference.runner import Batch, BatchResult, InferenceJob

RAY_EXTRA = "--engine ray needs the ray extra: pip install 'deepfake-cli[ray]'"
LOCAL_NODE_IP = "127.0.0.1"
# Ray's switch for "this machine only": its node IP then stays loopback (the default on macOS and Windows)
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# what every ray.init of ours asks: no dashboard, nothing of the workers' output or Ray's chatter printed
QUIET_DRIVER = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
MAX_CLUSTER_MESSAGES = 100
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
logger = logging.getLogger(__name__)
RAY_CLIENT = ("ray:// addresses (Ray Client) are not supported (Ray Data does not support Ray Client, ray issue "
              "48682): run on a node of the cluster with --ray-address HOST:PORT (or RAY_ADDRESS), or send the "
              "command with `ray job submit`.")


def import_ray():
    """The `ray` module, or the one-line error naming the extra."""
    try:
        import ray
    except ImportError:
        raise DeepfakeError(RAY_EXTRA) from None
    return ray


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, DeepfakeError):
        return text[0] if text else "error"
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- what runs on the cluster -------------------------------------------------------------------------


def _to_numpy(inputs):
    if isinstance(inputs, (tuple, list)):
        return tuple(_to_numpy(x) for x in inputs)
    return inputs.numpy()


def _to_torch(inputs):
    import torch

    if isinstance(inputs, (tuple, list)):
        return tuple(_to_torch(x) for x in inputs)
    with warnings.catch_warnings():  # arrays from the object store are read-only; nothing writes to them
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(inputs)


def read_batch(reader, items: Sequence, indices: Sequence[int]):
    """A read task: (meta, uint8 inputs or None). `meta` = (ok indices, sha256s, failures, seconds)."""
    t0 = time.perf_counter()
    read = collate([reader.read(i, it) for i, it in zip(indices, items)])
    inputs = None if read.inputs is None else _to_numpy(read.inputs)
    return (read.ok_indices, read.sha256s, read.failures, time.perf_counter() - t0), inputs


class ModelWorker:
    """The model actor: builds the backbone from its spec once (again after a restart), embeds batches."""

    def __init__(self, spec, device: str, threads: int):
        self.pid, self.error, self.mapper = os.getpid(), "", None
        try:
            import torch

            # as many torch threads as CPUs this actor was given: more only oversubscribes the node
            torch.set_num_threads(max(1, threads))
            from deepfake_cli.inference.device import resolve_device
            from deepfake_cli.inference.mapper import Mapper

            self.mapper = Mapper.from_spec(spec, resolve_device(device))
            if self.mapper.split is None:
                self.error = f"backbone {spec.name} preprocesses in a way that cannot be shipped between processes"
        except DeepfakeError as exc:
            self.error = str(exc)
        except Exception as exc:  # reported by `ready` as one line; the driver stops the run
            self.error = _first_line(exc)

    def ready(self) -> tuple[int, str, str]:
        return self.pid, self.error, "" if self.mapper is None else str(self.mapper.device)

    def embed(self, inputs) -> tuple[np.ndarray, float]:
        if self.error:  # a restart that failed to build the model
            raise DeepfakeError(self.error)
        t0 = time.perf_counter()
        feats = self.mapper(_to_torch(inputs))
        return feats, time.perf_counter() - t0


# --- the driver side ----------------------------------------------------------------------------------


class RayRunner:
    """Runs reader tasks and model actors on a Ray cluster; see the module docstring.

    `address`: a cluster (HOST:PORT or "auto"), else RAY_ADDRESS, else a local cluster started for the
    run (bound to 127.0.0.1, shut down after it). An already initialised Ray (a script's own
    `ray.init`) is used as it is and left running. `model_workers` actors, each with
    `gpus_per_worker` GPUs (fractions share a GPU) and `worker_cpus` CPUs (default: 1 with a GPU,
    else an equal share of the cluster's CPUs with one share left to the readers); `workers` read tasks
    at a time (default: as many as the CPUs left), each reserving `reader_cpus`.
    """

    remote = True  # builds the model itself: the caller needs one only for metadata, on the CPU

    def __init__(self, workers: int | None = None, address: str | None = None, model_workers: int | None = None,
                 gpus_per_worker: float | None = None, device: str | None = None, worker_cpus: float | None = None,
                 reader_cpus: float | None = None, num_cpus: int | None = None, max_attempts: int = 3,
                 on_workers: Callable[[list[int]], None] | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address and self.address.strip().lower().startswith("ray://"):
            raise DeepfakeError(RAY_CLIENT)
        import_ray()  # fail now, in one line, when the extra is missing
        if self.address:
            _check_reachable(self.address)  # before any work: Ray itself would retry for minutes
        self.model_workers = 1 if model_workers is None else int(model_workers)
        if self.model_workers < 1:
            raise DeepfakeError("--model-workers must be at least 1.")
        gpus = 0.0 if gpus_per_worker is None else float(gpus_per_worker)
        if gpus < 0:
            raise DeepfakeError("--gpus-per-worker must be 0 or more.")
        device = (device or "auto").lower()
        if device.startswith("cuda") and gpus == 0:
            gpus = 1.0  # --device cuda: one GPU per model worker unless told otherwise
        if device == "cpu" and gpus > 0:
            raise DeepfakeError("--device cpu and --gpus-per-worker > 0 contradict each other: drop one.")
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise DeepfakeError(f"unknown --device '{device}': use auto, cpu or cuda.")
        self.gpus_per_worker = gpus
        self.worker_device = "cuda" if gpus > 0 else "cpu"
        self.readers = workers if workers is not None and workers > 0 else None
        self.worker_cpus, self.reader_cpus, self.num_cpus = worker_cpus, reader_cpus, num_cpus
        self.max_attempts = max(1, int(max_attempts))
        self.on_workers = on_workers
        self.resubmitted = 0  # batches sent again because a model worker died or an input was lost
        self.batches_run: list[int] = []  # batch numbers delivered by the last run, in delivery order
        self.cluster_messages: list[str] = []  # what the cluster told the driver (plain text), never printed
        self.device_text = (f"ray, {self.model_workers} {self.worker_device} model worker"
                            + ("s" if self.model_workers > 1 else ""))

    # connection ---------------------------------------------------------------------------------------

    def _connect(self, ray) -> bool:
        """Connect (or start a local cluster); True when this runner started Ray and must shut it down."""
        if ray.is_initialized():
            return False
        try:
            if self.address:
                ray.init(address=self.address, **QUIET_DRIVER)
            else:  # a private local cluster: never an existing `ray start` instance, never another interface
                start_local_cluster(ray, num_cpus=self.num_cpus)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
            raise DeepfakeError(f"cannot connect to {where}: {_first_line(exc)}") from None
        except Exception as exc:  # AuthenticationError and other RayErrors
            if type(exc).__module__.startswith("ray"):
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
                raise DeepfakeError(f"cannot connect to {where}: {_first_line(exc)}") from None
            raise
        return True

    def _plan(self, ray) -> tuple[float, int, float, int]:
        """(CPUs per model worker, its torch threads, CPUs per read task, read tasks at a time)."""
        res = ray.cluster_resources()
        cpus, gpus, n = float(res.get("CPU", 0)), float(res.get("GPU", 0)), self.model_workers
        if self.gpus_per_worker * n > gpus:
            raise DeepfakeError(f"{n} model worker(s) x {self.gpus_per_worker:g} GPU need {self.gpus_per_worker * n:g} "
                                f"GPU(s); the Ray cluster has {gpus:g}.")
        if self.worker_cpus is not None:
            wc = float(self.worker_cpus)
        elif self.gpus_per_worker > 0:
            wc = 1.0 if cpus >= n + 1 else cpus / (n + 1)
        else:
            wc = max(1.0, math.floor(cpus / (n + 1))) if cpus >= 2 * n + 1 else cpus / (n + 1)
        wc = math.floor(wc * 100) / 100
        left = cpus - wc * n
        if wc <= 0 or left <= 0:
            raise DeepfakeError(f"{n} model worker(s) x {wc:g} CPU leave no CPU for readers on a Ray cluster with "
                                f"{cpus:g} CPU(s): use fewer --model-workers.")
        rc = float(self.reader_cpus) if self.reader_cpus is not None else min(1.0, math.floor(left * 100) / 100)
        readers = self.readers or max(1, int(left // rc))
        return wc, max(1, int(round(wc))), rc, readers

    # the run ------------------------------------------------------------------------------------------

    def run(self, job: InferenceJob, batches: Sequence[Batch]) -> Iterator[BatchResult]:
        self.batches_run = []
        if not batches:
            return
        ray = import_ray()
        spec = job.mapper.spec
        if spec is None:
            raise DeepfakeError("the ray engine rebuilds the backbone on its workers and needs its BackboneSpec.")
        if job.mapper.split is None:
            raise DeepfakeError(f"backbone {spec.name} preprocesses in a way that cannot be shipped to Ray "
                                "workers: use --engine local.")
        owned = self._connect(ray)
        actors: list = []
        restore = _capture_cluster_messages(self.cluster_messages)
        try:
            wc, threads, rc, readers = self._plan(ray)
            actor_cls = ray.remote(ModelWorker).options(
                num_cpus=wc, num_gpus=self.gpus_per_worker, max_restarts=4, max_task_retries=0,
                scheduling_strategy="SPREAD")
            actors = [actor_cls.remote(spec, self.worker_device, threads) for _ in range(self.model_workers)]
            self._wait_ready(ray, actors)
            read_task = ray.remote(read_batch).options(num_cpus=rc, num_returns=2)
            reader_ref = ray.put(job.reader)  # the crop transform and config: no weights
            yield from self._schedule(ray, job, batches, read_task, reader_ref, actors, readers)
        finally:
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:
                    pass
            if owned:
                ray.shutdown()
            restore()

    def _wait_ready(self, ray, actors, timeout: float = 600.0) -> None:
        refs = [a.ready.remote() for a in actors]
        done, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if pending:
            raise DeepfakeError(f"{len(pending)} model worker(s) did not start within {timeout:.0f} s; the Ray "
                                f"cluster has {ray.cluster_resources()}.")
        try:
            states = ray.get(refs)
        except Exception as exc:
            raise DeepfakeError(f"a model worker could not start: {_first_line(exc)}") from None
        for _pid, error, _dev in states:
            if error:
                raise DeepfakeError(f"a model worker could not start: {error}")
        if self.on_workers:
            self.on_workers([pid for pid, _, _ in states])

    def _schedule(self, ray, job, batches, read_task, reader_ref, actors, readers) -> Iterator[BatchResult]:
        yield from _Scheduler(self, ray, job, batches, read_task, reader_ref, actors, readers).run()

    def _deliver(self, b: Batch, meta, feats, model_seconds: float, delivered: set) -> Iterator[BatchResult]:
        if b.no in delivered:  # never twice, whatever the cluster did
            return
        delivered.add(b.no)
        self.batches_run.append(b.no)
        ok, shas, failures, read_seconds = meta
        yield BatchResult(b.no, list(ok), list(shas), np.asarray(feats, dtype=np.float32),
                          [tuple(f) for f in failures], {"read": read_seconds, "model": model_seconds})


class _Scheduler:
    """The driver's loop for one run: batches flow todo -> reading -> ready -> embedding -> delivered.

    Reads are bounded by `readers` and by the ready queue (so memory stays bounded); each actor holds at
    most PER_ACTOR batches. Every wait handles one finished ref: a read, an embedding, or the ready()
    probe of an actor that died and is restarting. A failed call delivered nothing, so its batch is
    queued again (`retry` counts the attempts); `runner._deliver` drops a batch delivered before.
    """

    PER_ACTOR = 2  # one batch running, one waiting, so an actor never waits for the driver

    def __init__(self, runner: RayRunner, ray, job, batches, read_task, reader_ref, actors, readers: int):
        self.runner, self.ray, self.job = runner, ray, job
        self.read_task, self.reader_ref, self.actors, self.readers = read_task, reader_ref, actors, readers
        self.todo: deque = deque(batches)
        self.reading: dict = {}    # meta ref -> (batch, inputs ref)
        self.ready: deque = deque()  # (batch, meta, inputs ref) read, waiting for an actor
        self.embedding: dict = {}  # features ref -> (batch, meta, inputs ref, actor index)
        self.probes: dict = {}     # ready() ref -> actor index, for an actor that died and is restarting
        self.load = [0] * len(actors)
        self.up = [True] * len(actors)
        self.attempts: dict[int, int] = {}
        self.delivered: set[int] = set()

    def run(self) -> Iterator[BatchResult]:
        while self.todo or self.reading or self.ready or self.embedding:
            self._submit_reads()
            self._dispatch()
            ref = self._next_done()
            if ref in self.probes:
                self._on_probe(ref)
            elif ref in self.reading:
                yield from self._on_read(ref)
            else:
                yield from self._on_embedded(ref)

    def _submit_reads(self) -> None:
        while (self.todo and len(self.reading) < self.readers
               and len(self.ready) <= self.PER_ACTOR * len(self.actors)):
            b = self.todo.popleft()
            meta_ref, inputs_ref = self.read_task.remote(self.reader_ref, [self.job.items[i] for i in b.indices],
                                                         b.indices)
            self.reading[meta_ref] = (b, inputs_ref)

    def _free_actors(self) -> list[int]:
        return [k for k in range(len(self.actors)) if self.up[k] and self.load[k] < self.PER_ACTOR]

    def _dispatch(self) -> None:
        """Hand read batches to the least-loaded actors that are up."""
        free = self._free_actors()
        while self.ready and free:
            k = min(free, key=lambda j: self.load[j])
            b, meta, inputs_ref = self.ready.popleft()
            self.embedding[self.actors[k].embed.remote(inputs_ref)] = (b, meta, inputs_ref, k)
            self.load[k] += 1
            free = self._free_actors()

    def _next_done(self):
        waiting = list(self.reading) + list(self.embedding) + list(self.probes)
        if not waiting:  # work is left but no actor is up or coming back
            raise DeepfakeError("every model worker died and none could be restarted.")
        return self.ray.wait(waiting, num_returns=1)[0][0]

    def _retry(self, b: Batch, why: str) -> None:
        self.attempts[b.no] = self.attempts.get(b.no, 0) + 1
        if self.attempts[b.no] >= self.runner.max_attempts:
            raise DeepfakeError(f"batch {b.no} failed {self.attempts[b.no]} times on the Ray cluster: {why}")
        self.runner.resubmitted += 1

    def _on_probe(self, ref) -> None:
        """A restarted actor answers: back in the pool (its model built again)."""
        from ray.exceptions import RayActorError

        k = self.probes.pop(ref)
        try:
            _pid, error, _dev = self.ray.get(ref)
        except RayActorError as exc:  # out of restarts: it stays out of the pool
            if not any(self.up) and not self.probes:
                raise DeepfakeError(f"every model worker died: {_first_line(exc)}") from None
            return
        if error:
            raise DeepfakeError(f"a model worker could not restart: {error}")
        self.up[k] = True

    def _on_read(self, ref) -> Iterator[BatchResult]:
        from ray.exceptions import RayTaskError

        b, inputs_ref = self.reading.pop(ref)
        try:
            meta = self.ray.get(ref)
        except Exception as exc:
            if isinstance(exc, RayTaskError) and not _is_system(exc):
                raise DeepfakeError(f"a reader failed on batch {b.no}: {_first_line(exc.cause or exc)}") from None
            self._retry(b, _first_line(exc))
            self.todo.appendleft(b)
            return
        if not meta[0]:  # nothing readable: no model call needed
            empty = np.zeros((0, self.job.mapper.dim), np.float32)
            yield from self.runner._deliver(b, meta, empty, 0.0, self.delivered)
        else:
            self.ready.append((b, meta, inputs_ref))

    def _on_embedded(self, ref) -> Iterator[BatchResult]:
        from ray.exceptions import ObjectLostError, RayActorError, RayTaskError

        b, meta, inputs_ref, k = self.embedding.pop(ref)
        self.load[k] -= 1
        try:
            feats, seconds = self.ray.get(ref)
        except RayActorError as exc:
            # The actor died (killed, OOM, node lost) with this batch in flight: nothing of the call was
            # delivered, so the batch goes back to the queue. The actor restarts; it gets work again
            # once a ready() call (retried by Ray until the restart is done) answers.
            self._retry(b, f"model worker died ({_first_line(exc)})")
            self.ready.appendleft((b, meta, inputs_ref))
            if self.up[k]:
                self.up[k] = False
                self.probes[self.actors[k].ready.options(max_task_retries=-1).remote()] = k
            return
        except ObjectLostError as exc:  # its input went with a lost node: read again
            self._retry(b, _first_line(exc))
            self.todo.appendleft(b)
            return
        except RayTaskError as exc:
            raise DeepfakeError(f"the model failed on batch {b.no}: {_first_line(exc.cause or exc)}") from None
        yield from self.runner._deliver(b, meta, feats, seconds, self.delivered)


def start_local_cluster(ray, num_cpus: int | None = None) -> None:
    """`ray.init` a private one-machine cluster whose every server listens on loopback only.

    Ray turns a node IP of 127.0.0.1 into the machine's routable address (`_node_ip_address` is
    "resolved for localhost"), and the GCS, the raylet and its object manager, the agents and every
    worker then listen on all interfaces. In Ray's single-machine mode the node IP stays loopback, and
    so does every server of the node: `_single_machine_mode` turns it on for the start. Checked before
    anything starts and again after: a Ray where it does not hold is refused in one line (shut down)."""
    with _single_machine_mode():
        if not _is_loopback(ray.util.get_node_ip_address()):
            raise DeepfakeError(_NOT_LOOPBACK.format(ip=ray.util.get_node_ip_address(), version=ray.__version__))
        ray.init(address="local", _node_ip_address=LOCAL_NODE_IP, num_cpus=num_cpus, **QUIET_DRIVER)
    ip = ray.util.get_node_ip_address()
    if not _is_loopback(ip):
        ray.shutdown()
        raise DeepfakeError(_NOT_LOOPBACK.format(ip=ip, version=ray.__version__))


_NOT_LOOPBACK = ("a local Ray cluster would listen on {ip}, not on loopback only (ray {version}), so none is "
                 "started: use --engine local, or a cluster of your own with --ray-address.")


@contextmanager
def _single_machine_mode():
    """Ray's single-machine mode while a local cluster starts: the environment variable for the processes
    it starts, the constant for this one (Ray read the variable at import). Both restored after."""
    saved_env = os.environ.get(SINGLE_MACHINE_ENV)
    try:
        from ray._private import ray_constants
    except ImportError:  # moved: the checks of `start_local_cluster` still refuse a public address
        ray_constants = None
    saved_const = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[SINGLE_MACHINE_ENV] = "0"
    if saved_const is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = saved_env
        if saved_const is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved_const


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(str(address).strip("[]"))
    except ValueError:
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse in one line an address where nothing answers: Ray itself would retry for minutes."""
    import socket

    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or "://" in address or address.strip().lower() in ("auto", "local"):
        return  # "auto" and other forms are Ray's to resolve
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise DeepfakeError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start it with "
                            "`ray start --head` or give the head's HOST:PORT (the GCS port, 6379 by default).") \
            from None


def _capture_cluster_messages(into: list[str]) -> Callable[[], None]:
    """For the run, keep the cluster's messages to the driver off the terminal; returns the undo.

    Ray's driver prints them ("(raylet) A worker died ...", "... The actor is restarting", with colour
    codes) on stdout, where `predict` writes its CSV, whatever `-q` says. What they report, the runner
    handles (a batch whose actor died is sent again) or raises as one line. They are kept as plain text
    in `into` (the last MAX_CLUSTER_MESSAGES) and logged at INFO on this module's logger. Private API:
    when it moves, nothing is patched and Ray prints as it does."""
    try:
        from ray._private import worker as ray_worker

        original = ray_worker.print_to_stdstream
    except (ImportError, AttributeError):
        return lambda: None

    def keep(data, ignore_prefix):
        for line in data.get("lines", ()):
            text = _plain(f"({data.get('pid', 'ray')}) {line}")
            into.append(text)
            del into[:-MAX_CLUSTER_MESSAGES]
            logger.info("%s", text)

    ray_worker.print_to_stdstream = keep

    def undo():
        ray_worker.print_to_stdstream = original

    return undo


def _plain(text: str, limit: int = 1000) -> str:
    """One line without terminal escape codes, cut to `limit` characters."""
    text = " ".join(ANSI_ESCAPE.sub("", str(text)).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_system(exc) -> bool:
    """A RayTaskError whose cause is the cluster's (a worker or its object lost), not our code's."""
    from ray.exceptions import ObjectLostError, RayActorError, WorkerCrashedError

    return isinstance(getattr(exc, "cause", None), (WorkerCrashedError, ObjectLostError, RayActorError))
