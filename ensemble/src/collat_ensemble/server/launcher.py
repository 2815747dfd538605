"""Start and stop a real tritonserver on a model repository, with safe defaults.

Machines without a GPU use the tritonserver 2.51 that the ``nvidia-pytriton`` wheel ships,
with its Python backend; GPU machines use the NGC image (``docker/``), whose entrypoint
applies the same flags. The wheel keeps one Python-backend stub per Python version, so the
backend folder is assembled per server (symlinks: the matching stub beside the backend
library), and the stub sees this interpreter's ``sys.path`` so that the Python steps import
the installed ``collat_ensemble``.

Defaults: loopback only, model control off (the repository is fixed at start), strict
readiness, the model-repository / shared-memory / logging / trace HTTP and gRPC APIs
restricted behind a random per-process key (nobody holds it), and Python-backend shared
memory sized for 4D volumes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..serving.context import STUB_NUMPY_VARIABLE, numpy_mismatch
from .warmup import WarmupError, warm_up

STUB_NUMPY_MAJOR = 1  # the numpy major version nvidia-pytriton 0.7.0's Python-backend stub was built against

RESTRICTED_APIS = "model-repository,shared-memory,logging,trace"
SERVED_PACKAGES = ("collat_ensemble", "collat_contract")  # what the Python-backend steps import
# A 4D perfusion series of 256x256x40x60 FP32 is 630 MB; shared memory grows in 64 MB steps from 256 MB.
PYTHON_SHM_DEFAULT = 256 * 1024 * 1024
PYTHON_SHM_GROWTH = 64 * 1024 * 1024


def tritonserver_flags(repository: Path, *, host: str, http_port: int, grpc_port: int,
                       metrics_port: int) -> list[str]:
    """The safe flags every tritonserver of this project starts with (pip build and NGC image alike)."""
    key = secrets.token_hex(16)
    return [
        f"--model-repository={repository}",
        f"--http-address={host}", f"--http-port={http_port}",
        f"--grpc-address={host}", f"--grpc-port={grpc_port}",
        f"--metrics-address={host}", f"--metrics-port={metrics_port}",
        "--model-control-mode=none", "--strict-readiness=true", "--exit-on-error=true",
        "--disable-auto-complete-config",
        f"--http-restricted-api={RESTRICTED_APIS}:collat-admin-key={key}",
        f"--grpc-restricted-protocol={RESTRICTED_APIS}:collat-admin-key={key}",
        f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_DEFAULT}",
        f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_GROWTH}",
    ]


SHM_PREFIX = "/dev/shm/triton_python_backend_shm_region_"


def group_processes(pgid: int) -> list[int]:
    """PIDs in one process group (tritonserver and its Python-backend stubs), from /proc."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid):
            pids.append(int(proc.name))
    return pids


def shm_regions(pgid: int) -> set[str]:
    """The Python backend's shared-memory files mapped by a server's processes.

    The backend unlinks them on a clean shutdown only; after a crash or SIGKILL they stay in
    /dev/shm (hundreds of MB each) until someone removes them, so the launcher remembers them.
    """
    regions = set()
    for pid in group_processes(pgid):
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            if SHM_PREFIX in line:
                regions.add(line[line.index(SHM_PREFIX):].replace(" (deleted)", "").strip())
    return regions


@dataclass(frozen=True)
class GroupMemory:
    """Memory of a server's processes, MiB. ``pss`` is the honest total: each page shared between the
    processes (the Python backend's shared-memory regions, libraries) counted once, split among its users;
    ``rss`` sums each process's resident pages and counts those shared pages once per process."""

    pss_mb: float
    rss_mb: float
    processes: int


# glibc's allocator for tritonserver and its stubs. A request carries a 75 MiB series and each step makes arrays of
# tens of MB: with glibc's default, its mmap threshold rises after such a buffer is freed, the next ones come from
# the heap and stay there, and every thread gets an arena of its own. Measured on the default repository (8 patients
# to warm, 40 more at concurrency 4, 2-core AMD EPYC): PSS 1858 -> 2091 MB (+12.5 %; tritonserver +120 MB, the
# perfusion steps +113 MB) by default, 1641 -> 1645 MB (+0.2 %) with these. Set either yourself to override.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(4 << 20), "MALLOC_ARENA_MAX": "2"}


def group_memory(pgid: int) -> GroupMemory:
    """``/proc/<pid>/smaps_rollup`` of every process in the group (tritonserver and its stubs)."""
    totals = {"Pss:": 0, "Rss:": 0}
    counted = 0
    for pid in group_processes(pgid):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        counted += 1
        for line in rollup.splitlines():
            key, _, rest = line.partition(" ")
            if key in totals:
                totals[key] += int(rest.split()[0])
    return GroupMemory(totals["Pss:"] / 1024, totals["Rss:"] / 1024, counted)


def _die_with_parent() -> None:
    """Linux: SIGTERM tritonserver if the process that started it dies, so no server outlives a killed test run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        pass


class ServerError(RuntimeError):
    """tritonserver could not be found, started or made ready; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError:
        raise ServerError("tritonserver not found: install the server extra "
                          "(pip install 'collat-ensemble[server]', which brings nvidia-pytriton)") from None
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise ServerError(f"no tritonserver binary under {root}")
    return root


def assemble_backends(root: Path, into: Path) -> Path:
    """A backends folder whose python/ holds the stub built for this interpreter's Python version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"the pip tritonserver has no Python-backend stub for Python {version}")
    python = into / "python"
    python.mkdir(parents=True, exist_ok=True)
    for item in (root / "backends" / "python").iterdir():
        if item.is_file():
            (python / item.name).symlink_to(item)
    (python / stub.name).symlink_to(stub)
    return into


@dataclass
class TritonServer:
    """One tritonserver process. Use as a context manager; ``stop`` always kills what ``start`` began."""

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 0  # 0: pick a free port
    grpc_port: int = 0
    metrics_port: int = 0
    log_file: Path | None = None
    log_verbose: int = 0
    extra_args: list[str] = field(default_factory=list)
    warmup: bool = True  # a phantom request through every pipeline before start() returns (see .warmup)
    warmed: list[str] = field(default_factory=list, init=False)
    process: subprocess.Popen | None = field(default=None, init=False)
    _workdir: Path | None = field(default=None, init=False)
    _regions: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.repository = Path(self.repository).resolve()
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self.metrics_port = self.metrics_port or free_port()

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def command(self, backends: Path, binary: Path) -> list[str]:
        return [str(binary), *tritonserver_flags(self.repository, host=self.host, http_port=self.http_port,
                                                 grpc_port=self.grpc_port, metrics_port=self.metrics_port),
                f"--backend-directory={backends}", f"--log-verbose={self.log_verbose}", *self.extra_args]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The stub embeds its own libpython with its own standard library: pass on only where packages live.
        stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
        paths = [p for p in sys.path if p and Path(p).is_dir() and p not in stdlib and "lib-dynload" not in p]
        # Editable installs may resolve packages through import hooks in .pth files, which the stub
        # (an embedded interpreter given PYTHONPATH) never runs: add the folders that hold them.
        for package in SERVED_PACKAGES:
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.submodule_search_locations:
                folder = str(Path(list(spec.submodule_search_locations)[0]).parent)
                if folder not in paths:
                    paths.insert(0, folder)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        # The stub's embedded interpreter finds its prefix through the `python3` on PATH (a virtual
        # environment's pyvenv.cfg then gives it that environment's site-packages and .pth hooks), so this
        # interpreter's folder goes first: the server then runs the Python steps with the same packages.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONNOUSERSITE"] = "1"
        env[STUB_NUMPY_VARIABLE] = str(STUB_NUMPY_MAJOR)
        # Each Python step is its own process: one BLAS thread each keeps 2-core machines from thrashing.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        for var, value in MALLOC_SETTINGS.items():
            env.setdefault(var, value)
        return env

    def start(self, timeout: float = 180.0) -> TritonServer:
        problem = numpy_mismatch(np.__version__, STUB_NUMPY_MAJOR)  # the stub runs in this environment
        if problem:
            raise ServerError(problem)
        if not (self.repository / "stroke_triage").is_dir() and not any(self.repository.glob("*/config.pbtxt")):
            raise ServerError(f"{self.repository} is not a model repository (no */config.pbtxt)")
        root = pytriton_root()
        self._workdir = Path(tempfile.mkdtemp(prefix="collat-triton-"))
        backends = assemble_backends(root, self._workdir / "backends")
        log = self.log_file or (self._workdir / "tritonserver.log")
        self.log_file = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(self.command(backends, root / "bin" / "tritonserver"),
                                            stdout=out, stderr=subprocess.STDOUT, env=self.environment(),
                                            start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self.wait_ready(timeout)
            if self.warmup:
                self.warmed = warm_up(self.http_url, self.repository)
        except WarmupError as exc:
            self.stop()
            raise ServerError(f"tritonserver is up but cannot serve: {exc}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def memory(self) -> GroupMemory:
        """What the running server and its Python-backend stubs hold (see :class:`GroupMemory`)."""
        if self.process is None:
            raise ServerError("tritonserver is not running")
        return group_memory(self.process.pid)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}")
            if self.ready():
                self._regions |= shm_regions(self.process.pid)
                return
            time.sleep(0.5)
        raise ServerError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self.log_file is None or not Path(self.log_file).is_file():
            return ""
        return "\n".join(Path(self.log_file).read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the Python-backend stubs go with the process group, and
        the shared-memory files they leave behind after a kill are removed."""
        if self.process is not None and self.process.poll() is None:
            self._regions |= shm_regions(self.process.pid)
            try:
                os.killpg(self.process.pid, 15)
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self.process is not None:
            deadline = time.monotonic() + 10
            while group_processes(self.process.pid) and time.monotonic() < deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, 9)  # stubs left behind in the group
                time.sleep(0.1)
        for region in self._regions:
            with contextlib.suppress(OSError):
                os.unlink(region)
        self._regions.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir / "backends", ignore_errors=True)
            with contextlib.suppress(OSError):  # kept only while it holds the log (no log_file given)
                self._workdir.rmdir()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(server: TritonServer, echo=print) -> int:
    """Run until SIGINT/SIGTERM or until tritonserver exits; returns its exit code (0 on a clean stop)."""
    import signal

    stopping = False

    def _stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server.start()
    if server.warmed:
        echo(f"warm-up through every pipeline passed ({', '.join(server.warmed)})")
    echo(f"tritonserver ready: HTTP http://{server.http_url}  gRPC {server.grpc_url}  "
         f"metrics http://{server.host}:{server.metrics_port}/metrics  (log: {server.log_file})")
    try:
        while not stopping and server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    finally:
        code = server.process.poll() if server.process is not None else None
        server.stop()
    if code not in (None, 0):
        echo(f"tritonserver exited with code {code}:\n{server.log_tail()}")
        return int(code)
    return 0
