"""Every tensor the serving stack names: what a client sends and receives, and what each network takes.

One ``TensorSpec`` for all of them. The pipelines' public tensors are the contract between
the SDK and the ensembles (the repository builder renders the ensembles' ``config.pbtxt``
from them and the SDK builds its requests from them, so the two cannot drift apart). The
networks' tensors are the contract between ONNX, TensorRT and Triton; their names differ
from the public ones on purpose: ``PERFUSION`` is the scanner's (x, y, z, t) series, the
network sees ``MROD_INPUT``, the series after preprocessing.

Dims are Triton's (no batch axis); -1 marks a free axis. Datatypes are KServe v2 names.
"""

from __future__ import annotations

from dataclasses import dataclass

from .clinical import CORE_LABEL
from .names import COLLATERAL_PIPELINE, HYPOPERFUSION_PIPELINE, HYPOPERFUSION_UNET, MROD_NET, STROKE_TRIAGE


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe v2: FP32, FP64, UINT8, BYTES
    dims: tuple[int, ...]  # without the batch axis; -1 = free
    description: str = ""

    @property
    def config_type(self) -> str:
        """The ``data_type`` Triton's config.pbtxt uses for this datatype."""
        return "TYPE_STRING" if self.datatype == "BYTES" else f"TYPE_{self.datatype}"

    @property
    def dynamic_axes(self) -> list[int]:
        """Free axes counted with a leading batch axis (0), as ONNX numbers them for a batched network."""
        return [0] + [i + 1 for i, d in enumerate(self.dims) if d == -1]


# ---------------------------------------------------------------- the pipelines' public tensors

# A perfusion series needs a baseline, a first pass and a washout; fewer frames cannot hold them. The SDK refuses
# such a series before upload, the server again (it trusts nothing), and a study's series are sorted by it.
MIN_PERFUSION_FRAMES = 20

PERFUSION = TensorSpec("PERFUSION", "FP32", (-1, -1, -1, -1),
                       "4D perfusion series indexed (x, y, z, t) as nibabel returns it (any orientation)")
PERFUSION_AFFINE = TensorSpec("PERFUSION_AFFINE", "FP64", (4, 4),
                              "NIfTI affine of PERFUSION: voxel (i, j, k) -> RAS mm")
FRAME_SECONDS = TensorSpec("FRAME_SECONDS", "FP32", (1,), "time between frames in seconds (NIfTI pixdim[4])")
DWI = TensorSpec("DWI", "FP32", (-1, -1, -1), "DWI b=1000, native or MNI space, indexed (x, y, z)")
ADC = TensorSpec("ADC", "FP32", (-1, -1, -1), "ADC on the DWI grid, in mm^2/s, 1e-3 or 1e-6 mm^2/s (detected)")
DWI_AFFINE = TensorSpec("DWI_AFFINE", "FP64", (4, 4), "NIfTI affine of DWI")
ADC_AFFINE = TensorSpec("ADC_AFFINE", "FP64", (4, 4), "NIfTI affine of ADC (must equal DWI_AFFINE)")
CLINICAL = TensorSpec("CLINICAL", "BYTES", (1,),
                      'UTF-8 JSON {"nihss": 0-42, "age": 18-120 or null, "side": left|right|bilateral|unknown, '
                      '"onset_to_imaging_min": number or null} (rules: collat_contract.clinical)')

COLLATERAL_MAPS = TensorSpec("COLLATERAL_MAPS", "FP32", (-1, -1, -1, 5),
                             "arterial, capillary, early venous, late venous, delay in [-1, 1] on the perfusion grid")
BRAIN_MASK = TensorSpec("BRAIN_MASK", "UINT8", (-1, -1, -1), "brain mask on the perfusion grid")
HYPOPERFUSION_PROB = TensorSpec("HYPOPERFUSION_PROB", "FP32", (-1, -1, -1),
                                "hypoperfusion probability on the DWI grid (1 inside the ADC core)")
LESION_MASK = TensorSpec("LESION_MASK", "UINT8", (-1, -1, -1),
                         "the hypoperfusion lesion the volumes count (probability rule and ADC core) on the DWI grid")
CORE_MASK = TensorSpec("CORE_MASK", "UINT8", (-1, -1, -1), f"{CORE_LABEL} on the DWI grid")
METRICS = TensorSpec("METRICS", "BYTES", (1,), "UTF-8 JSON metrics document (collat_contract.metrics)")


@dataclass(frozen=True)
class Pipeline:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


COLLATERAL = Pipeline(COLLATERAL_PIPELINE, (PERFUSION, PERFUSION_AFFINE, FRAME_SECONDS),
                      (COLLATERAL_MAPS, BRAIN_MASK, METRICS))
HYPOPERFUSION = Pipeline(HYPOPERFUSION_PIPELINE, (DWI, ADC, DWI_AFFINE, ADC_AFFINE, CLINICAL),
                         (HYPOPERFUSION_PROB, LESION_MASK, CORE_MASK, METRICS))
TRIAGE = Pipeline(STROKE_TRIAGE, COLLATERAL.inputs + HYPOPERFUSION.inputs,
                  (COLLATERAL_MAPS, BRAIN_MASK, HYPOPERFUSION_PROB, LESION_MASK, CORE_MASK, METRICS))
PIPELINES: dict[str, Pipeline] = {p.name: p for p in (COLLATERAL, HYPOPERFUSION, TRIAGE)}


# ---------------------------------------------------------------- the networks' tensors

@dataclass(frozen=True)
class NetworkIO:
    triton_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def mrod_io(frames: int, phases: int) -> NetworkIO:
    """3D-MROD-Net: time is the channel axis; slices and the in-plane grid are free (multiples of 32 in-plane)."""
    return NetworkIO(
        MROD_NET,
        (TensorSpec("MROD_INPUT", "FP32", (frames, -1, -1, -1),
                    "preprocessed series [T, D, H, W] in [-0.9, 0.9], -0.9 outside the brain"),),
        (TensorSpec("PHASES", "FP32", (phases, -1, -1, -1), "phase maps [5, D, H, W]"),),
    )


def unet_io(channels: int, slices: int, height: int, width: int) -> NetworkIO:
    """The U-Net always sees fixed slabs (16 slices of the padded 128x128 MNI grid) and NIHSS / 21."""
    return NetworkIO(
        HYPOPERFUSION_UNET,
        (TensorSpec("IMAGE", "FP32", (channels, slices, height, width), "DWI, ADC, core and side channels"),
         TensorSpec("NIHSS", "FP32", (1,), "NIHSS / 21")),
        (TensorSpec("LESION_PROB", "FP32", (1, slices, height, width), "hypoperfusion probability per voxel"),),
    )
