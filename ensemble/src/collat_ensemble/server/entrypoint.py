"""The NGC image's entrypoint: build missing TensorRT engines for the GPU at hand, cache them, exec tritonserver.

Engines only load on the GPU model and TensorRT version that built them, so they cannot
ship in the image. At start-up each ``tensorrt_plan`` model's ``model.onnx`` is built into
``<cache>/<gpu>-sm<cc>-trt<version>/<model>/model.plan`` unless that file already exists
(a volume keeps it across restarts and replicas with the same GPU), written to a temporary
name and renamed so that a crash never leaves a half-written plan in the cache. The image's
repository is read-only; a runtime copy gets the plans linked in, then ``tritonserver``
replaces this process with the project's safe flags.

Environment: ``COLLAT_REPOSITORY`` (/opt/collat/model_repository), ``COLLAT_ENGINE_CACHE``
(/engines), ``COLLAT_RUNTIME`` (/tmp/collat/model_repository), ``COLLAT_HOST`` (127.0.0.1:
loopback unless set), ``COLLAT_HTTP_PORT``/``GRPC``/``METRICS`` (8000/8001/8002),
``COLLAT_FP16`` (1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from .launcher import MALLOC_SETTINGS, tritonserver_flags
from .tensorrt_build import ShapeProfile, default_profile


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"


def cache_key(gpu: GpuInfo, tensorrt_version: str) -> str:
    """Folder name for engines of one GPU model + TensorRT version, e.g. ``nvidia-h100-80gb-hbm3-sm90-trt10.5.0``."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.name.lower()).strip("-")
    return f"{slug}-sm{gpu.compute_capability.replace('.', '')}-trt{tensorrt_version}"


@dataclass(frozen=True)
class EngineJob:
    model: str
    onnx: Path
    plan: Path  # in the cache
    profile: ShapeProfile
    version: str = "1"  # the model's version folder (an imported network is a new version beside the others)


def _config_value(text: str, key: str) -> str | None:
    match = re.search(rf"^{key}:\s*\"?([^\"\n]+)\"?", text, flags=re.M)
    return match.group(1).strip() if match else None


def tensorrt_models(repository: Path) -> list[str]:
    return sorted(p.parent.name for p in repository.glob("*/config.pbtxt")
                  if _config_value(p.read_text(), "platform") == "tensorrt_plan")


def engine_jobs(repository: Path, cache: Path) -> list[EngineJob]:
    """One job per TensorRT model; the profile comes from its config (max batch) and ONNX sidecar (geometry)."""
    jobs = []
    for model in tensorrt_models(repository):
        folder = repository / model
        max_batch = int(_config_value((folder / "config.pbtxt").read_text(), "max_batch_size") or 1)
        versions = sorted((p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=int) or ["1"]
        for version in versions:
            onnx, sidecar = folder / version / "model.onnx", folder / version / "model.json"
            if not onnx.is_file() or not sidecar.is_file():
                raise FileNotFoundError(f"{folder}/{version} has no model.onnx + model.json to build the engine from "
                                        "(build the image with exported networks)")
            meta = json.loads(sidecar.read_text())
            inputs = tuple(SimpleNamespace(name=i["name"], dims=tuple(i["dims"])) for i in meta["inputs"])
            profile = default_profile(inputs, meta.get("geometry", {}), max_batch,  # type: ignore[arg-type]
                                      meta.get("spatial_multiple"))
            plan = cache / model / "model.plan" if version == "1" else cache / model / version / "model.plan"
            jobs.append(EngineJob(model, onnx, plan, profile, version))
    return jobs


Builder = Callable[[EngineJob, Path], None]  # (job, path to write the plan to)


def runtime_copy(repository: Path, runtime: Path) -> None:
    """A fresh writable copy of the image's read-only repository (engines are linked into it)."""
    if runtime.exists():
        shutil.rmtree(runtime)
    shutil.copytree(repository, runtime, symlinks=True)


def prepare_engines(repository: Path, cache_root: Path, runtime: Path, gpu: GpuInfo, tensorrt_version: str,
                    build: Builder, log: Callable[[str], None] = print) -> list[str]:
    """Copy the repository to ``runtime``, build missing plans into the cache, link them in; returns built models."""
    cache = cache_root / cache_key(gpu, tensorrt_version)
    runtime_copy(repository, runtime)
    built = []
    for job in engine_jobs(runtime, cache):
        if job.plan.is_file():
            log(f"[collat] {job.model}: cached engine {job.plan}")
        else:
            job.plan.parent.mkdir(parents=True, exist_ok=True)
            partial = job.plan.with_name(f".model.plan.{os.getpid()}.partial")
            log(f"[collat] {job.model}: building a TensorRT engine for {gpu.name} (sm {gpu.compute_capability}), "
                "this takes minutes once per GPU model")
            try:
                build(job, partial)
                os.replace(partial, job.plan)
            finally:
                partial.unlink(missing_ok=True)
            built.append(job.model)
        target = runtime / job.model / job.version / "model.plan"
        target.unlink(missing_ok=True)
        target.symlink_to(job.plan)
    return built


def tensorrt_builder(fp16: bool) -> Builder:
    from .tensorrt_build import build_engine

    def build(job: EngineJob, out: Path) -> None:
        build_engine(job.onnx, out, job.profile, fp16=fp16, timing_cache=job.plan.parent.parent / "timing.cache")

    return build


def main() -> None:  # pragma: no cover - runs inside the NGC image on a GPU
    env = os.environ.get
    repository = Path(env("COLLAT_REPOSITORY", "/opt/collat/model_repository"))
    runtime = Path(env("COLLAT_RUNTIME", "/tmp/collat/model_repository"))
    if tensorrt_models(repository):
        import tensorrt

        from .tensorrt_build import gpu_descriptor, unavailable_reason

        reason = unavailable_reason()
        if reason:
            sys.exit(f"[collat] this repository serves TensorRT engines but {reason}; "
                     "use the CPU profile (openvino target) on machines without a GPU")
        gpu = GpuInfo(*gpu_descriptor())
        prepare_engines(repository, Path(env("COLLAT_ENGINE_CACHE", "/engines")), runtime, gpu,
                        tensorrt.__version__, tensorrt_builder(env("COLLAT_FP16", "1") == "1"))
    else:
        runtime_copy(repository, runtime)
    flags = tritonserver_flags(runtime, host=env("COLLAT_HOST", "127.0.0.1"),
                               http_port=int(env("COLLAT_HTTP_PORT", "8000")),
                               grpc_port=int(env("COLLAT_GRPC_PORT", "8001")),
                               metrics_port=int(env("COLLAT_METRICS_PORT", "8002")))
    for var, value in MALLOC_SETTINGS.items():  # as the launcher sets them: memory flat under load
        os.environ.setdefault(var, value)
    os.execvp("tritonserver", ["tritonserver", *flags, *sys.argv[1:]])


if __name__ == "__main__":  # pragma: no cover
    main()
