"""Thin Triton Python-backend adapters around the pipeline steps.

Each model folder's ``model.py`` is one line that imports a class from here, so the code
that runs in tritonserver is this installed, tested package. Tensor names come from the
model's own ``config.pbtxt`` (written by ``collat-export repository`` from the client's
contract) and are matched to each step's arguments by position; the adapters hold no names.

Every request is answered: an ``InputValidationError`` becomes ``INVALID_ARG`` with its
message (which names the problem), anything else ``INTERNAL`` with the exception's type and
message, and the model keeps serving. Voxel data and clinical inputs are never logged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from collat_contract import names
from collat_contract.metrics import ModelProvenance

from .. import quality
from ..contrast import trained_dsc_conversion
from ..errors import InputValidationError
from ..hypoperfusion import VolumeCalibration
from ..preprocess import SLAB_STRIDE, check_stride
from ..template import TEMPLATE_FILE, Template, load_template
from ..territory import CPSRule
from . import context as ctx
from . import diffusion, metrics, perfusion

try:  # available only inside tritonserver's Python backend
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - unit tests import this module outside Triton
    pb_utils = None


class _Step:
    """Request loop, tensor plumbing and error mapping shared by all steps."""

    arity: tuple[int, int]  # (inputs, outputs) the step's run() takes and returns

    def initialize(self, args: dict[str, str]) -> None:
        stub = os.environ.get(ctx.STUB_NUMPY_VARIABLE)
        problem = ctx.numpy_mismatch(np.__version__, int(stub) if stub else None)
        if problem:  # fail the load (the server does not become ready) rather than every request
            raise RuntimeError(problem)
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        if (len(self.input_names), len(self.output_names)) != self.arity:
            raise RuntimeError(f"{self.name}: config declares {len(self.input_names)} inputs and "
                               f"{len(self.output_names)} outputs, the step needs {self.arity}")
        self.params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.repository = Path(args["model_repository"]).parent
        self.version_dir = Path(args["model_repository"]) / str(args.get("model_version", "1"))
        self.setup()

    def setup(self) -> None:
        """Read parameters once at load time."""

    def run(self, *arrays: np.ndarray) -> Sequence[np.ndarray]:
        raise NotImplementedError

    def _read(self, request: Any, name: str) -> np.ndarray:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise InputValidationError(f"missing input {name}")
        return tensor.as_numpy()

    def execute(self, requests: list) -> list:
        return [self._answer(r) for r in requests]

    def _answer(self, request: Any) -> Any:
        try:
            outputs = self.run(*(self._read(request, n) for n in self.input_names))
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(o)) for n, o in zip(self.output_names, outputs,
                                                                                  strict=True)]
            return pb_utils.InferenceResponse(output_tensors=tensors)
        except InputValidationError as exc:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"{self.name}: {exc}", pb_utils.TritonError.INVALID_ARG))
        except Exception as exc:  # noqa: BLE001 - a bug must fail one request, not the server
            message = f"{self.name}: internal error {type(exc).__name__}: {exc}"
            pb_utils.Logger.log_error(message)
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL))

    def model_info(self, parameter: str) -> ModelProvenance:
        """The provenance of the network this step serves, at the version the ensembles reach (the repository
        builder sets ``network_version`` when a network has several)."""
        return metrics.network_model_info(self.repository, self.params[parameter],
                                          self.params.get("network_version", "1"))


def _load_template(step: _Step) -> Template:
    """The MNI template lies in the model's folder (written by the repository builder); without it the model does
    not load, so a server missing it fails at start-up with this reason, never per request."""
    path = step.version_dir / step.params.get("template", TEMPLATE_FILE)
    if not path.is_file():
        raise RuntimeError(f"{step.name}: registration template {path} is missing; rebuild the repository "
                           "with collat-export repository")
    return load_template(path)


class PreprocessPerfusion(_Step):
    """PERFUSION (X,Y,Z,T), PERFUSION_AFFINE, FRAME_SECONDS -> network input, brain mask, context."""

    arity = (3, 3)

    def setup(self) -> None:
        self.grid = perfusion.NetworkGrid.parse(self.params["network_grid"])
        self.template = _load_template(self)
        try:  # DSC is converted as the served weights were trained on it
            self.dsc_conversion = trained_dsc_conversion(self.model_info("network_model"))
        except ValueError as exc:
            raise RuntimeError(f"{self.name}: the model card of {self.params['network_model']}: {exc}") from None

    def run(self, series, affine, frame_seconds):
        network_input, mask, context = perfusion.preprocess(series, affine, frame_seconds, self.grid, self.template,
                                                            self.dsc_conversion)
        return network_input, mask, ctx.encode(context)


class PostprocessCollateral(_Step):
    """Network maps, brain mask, context -> maps and mask on the input grid, METRICS."""

    arity = (3, 3)

    def setup(self) -> None:
        info = self.model_info("network_model")
        # The CPS rule fitted on this network's maps (its model card); a broken one stops the server at load.
        rule = info.pop("cps_rule", None)
        try:
            self.rule = None if rule is None else CPSRule.from_dict(rule, "its cps_rule")
        except InputValidationError as exc:
            raise RuntimeError(f"{self.name}: the model card of {self.params['network_model']}: {exc}") from None
        self.models = {self.params["network_model"]: info}
        self.trained_modalities = info.get("modalities")

    def run(self, phases, mask, context):
        maps, brain, part, timings = perfusion.postprocess(phases, mask, ctx.decode(context, "context"),
                                                           self.trained_modalities, self.rule)
        doc = metrics.document(names.COLLATERAL_PIPELINE, collateral=part, timings_ms=timings, models=self.models)
        return maps, brain, ctx.encode(doc)


class PreprocessDiffusion(_Step):
    """DWI, ADC, their affines, CLINICAL (JSON) -> slabs, NIHSS rows, core, brain, context."""

    arity = (5, 5)

    def setup(self) -> None:
        self.template = _load_template(self)
        self.stride = check_stride(int(self.params.get("unet_stride", SLAB_STRIDE)))

    def run(self, dwi, adc, dwi_affine, adc_affine, clinical):
        slabs, nihss, core, brain, context = diffusion.preprocess(dwi, adc, dwi_affine, adc_affine,
                                                                  ctx.decode(clinical, "CLINICAL"), self.template,
                                                                  self.stride)
        return slabs, nihss, core, brain, ctx.encode(context)


class PostprocessHypoperfusion(_Step):
    """Slab probabilities, core, brain, context -> probability, lesion and core on the DWI grid, METRICS."""

    arity = (4, 4)

    def setup(self) -> None:
        info = self.model_info("network_model")
        # The weights' own volume calibration and training domain; a card that carries a broken one stops the
        # server at load.
        calibration, domain = info.pop("lesion_calibration", None), info.pop("training_domain", None)
        try:
            self.calibration = None if calibration is None else VolumeCalibration.from_dict(calibration)
            self.domain = None if domain is None else quality.TrainingDomain.from_dict(domain)
        except ValueError as exc:
            raise RuntimeError(f"{self.name}: the model card of {self.params['network_model']}: {exc}") from None
        self.models = {self.params["network_model"]: info}

    def run(self, probabilities, core, brain, context):
        prob, lesion, core_mask, part, timings = diffusion.postprocess(probabilities, core, brain,
                                                                       ctx.decode(context, "context"),
                                                                       self.calibration, self.domain)
        doc = metrics.document(names.HYPOPERFUSION_PIPELINE, hypoperfusion=part, timings_ms=timings,
                               models=self.models)
        return prob, lesion, core_mask, ctx.encode(doc)


class MergeMetrics(_Step):
    """The two pipelines' METRICS -> one document for stroke_triage."""

    arity = (2, 1)

    def run(self, collateral_doc, hypoperfusion_doc):
        merged = metrics.merge(names.STROKE_TRIAGE, ctx.decode(collateral_doc, "collateral metrics"),
                               ctx.decode(hypoperfusion_doc, "hypoperfusion metrics"))
        return (ctx.encode(merged),)


STEPS: dict[str, Callable[[], _Step]] = {
    names.PREPROCESS_PERFUSION: PreprocessPerfusion,
    names.POSTPROCESS_COLLATERAL: PostprocessCollateral,
    names.PREPROCESS_DIFFUSION: PreprocessDiffusion,
    names.POSTPROCESS_HYPOPERFUSION: PostprocessHypoperfusion,
    names.MERGE_METRICS: MergeMetrics,
}
