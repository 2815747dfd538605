"""The serving contract: each pipeline's tensors as the server declares them and the SDK sends them.

This module is the one home of the public tensor names, shapes and dtypes. The model
repository builder (``collat-export repository``) renders the ensembles' ``config.pbtxt``
from it, and the SDK builds its requests from it, so the two cannot drift apart.

Dims are Triton's (no batch axis: the ensembles take one patient per request); -1 marks a
free axis. Datatypes are KServe v2 names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe v2: FP32, FP64, UINT8, BYTES
    dims: tuple[int, ...]
    description: str

    @property
    def config_type(self) -> str:
        """The ``data_type`` Triton's config.pbtxt uses for this datatype."""
        return "TYPE_STRING" if self.datatype == "BYTES" else f"TYPE_{self.datatype}"


PERFUSION = TensorSpec("PERFUSION", "FP32", (-1, -1, -1, -1),
                       "4D perfusion series indexed (x, y, z, t) as nibabel returns it (any orientation)")
PERFUSION_AFFINE = TensorSpec("PERFUSION_AFFINE", "FP64", (4, 4),
                              "NIfTI affine of PERFUSION: voxel (i, j, k) -> RAS mm")
FRAME_SECONDS = TensorSpec("FRAME_SECONDS", "FP32", (1,), "time between frames in seconds (NIfTI pixdim[4])")
DWI = TensorSpec("DWI", "FP32", (-1, -1, -1), "DWI b=1000 in MNI space, indexed (x, y, z)")
ADC = TensorSpec("ADC", "FP32", (-1, -1, -1), "ADC on the DWI grid, in mm^2/s or 1e-6 mm^2/s (detected)")
DWI_AFFINE = TensorSpec("DWI_AFFINE", "FP64", (4, 4), "NIfTI affine of DWI")
ADC_AFFINE = TensorSpec("ADC_AFFINE", "FP64", (4, 4), "NIfTI affine of ADC (must equal DWI_AFFINE)")
CLINICAL = TensorSpec("CLINICAL", "BYTES", (1,),
                      'UTF-8 JSON {"nihss": 0-42, "age": 18-120 or null, "side": left|right|bilateral|unknown, '
                      '"onset_to_imaging_min": number or null}')

COLLATERAL_MAPS = TensorSpec("COLLATERAL_MAPS", "FP32", (-1, -1, -1, 5),
                             "arterial, capillary, early venous, late venous, delay in [-1, 1] on the perfusion grid")
BRAIN_MASK = TensorSpec("BRAIN_MASK", "UINT8", (-1, -1, -1), "brain mask on the perfusion grid")
HYPOPERFUSION_PROB = TensorSpec("HYPOPERFUSION_PROB", "FP32", (-1, -1, -1),
                                "hypoperfusion probability on the DWI grid (1 inside the ADC core)")
CORE_MASK = TensorSpec("CORE_MASK", "UINT8", (-1, -1, -1), "ADC core (ADC < 620e-6 mm^2/s) on the DWI grid")
METRICS = TensorSpec("METRICS", "BYTES", (1,), "UTF-8 JSON metrics document (collat_client.schema.Metrics)")


@dataclass(frozen=True)
class Pipeline:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


COLLATERAL_PIPELINE = Pipeline("collateral_pipeline", (PERFUSION, PERFUSION_AFFINE, FRAME_SECONDS),
                               (COLLATERAL_MAPS, BRAIN_MASK, METRICS))
HYPOPERFUSION_PIPELINE = Pipeline("hypoperfusion_pipeline", (DWI, ADC, DWI_AFFINE, ADC_AFFINE, CLINICAL),
                                  (HYPOPERFUSION_PROB, CORE_MASK, METRICS))
STROKE_TRIAGE = Pipeline("stroke_triage", COLLATERAL_PIPELINE.inputs + HYPOPERFUSION_PIPELINE.inputs,
                         (COLLATERAL_MAPS, BRAIN_MASK, HYPOPERFUSION_PROB, CORE_MASK, METRICS))
PIPELINES: dict[str, Pipeline] = {p.name: p for p in (COLLATERAL_PIPELINE, HYPOPERFUSION_PIPELINE, STROKE_TRIAGE)}
