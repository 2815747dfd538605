"""Names that both sides spell: map phases, Triton models (networks and Python steps) and pipelines."""

from __future__ import annotations

PHASE_NAMES: tuple[str, ...] = ("arterial", "capillary", "early_venous", "late_venous", "delay")

MROD_NET = "mrod_net"
HYPOPERFUSION_UNET = "hypoperfusion_unet"
NETWORKS: tuple[str, ...] = (MROD_NET, HYPOPERFUSION_UNET)

PREPROCESS_PERFUSION = "preprocess_perfusion"
POSTPROCESS_COLLATERAL = "postprocess_collateral"
PREPROCESS_DIFFUSION = "preprocess_diffusion"
POSTPROCESS_HYPOPERFUSION = "postprocess_hypoperfusion"
MERGE_METRICS = "merge_metrics"
PYTHON_STEPS: tuple[str, ...] = (PREPROCESS_PERFUSION, POSTPROCESS_COLLATERAL, PREPROCESS_DIFFUSION,
                                 POSTPROCESS_HYPOPERFUSION, MERGE_METRICS)

COLLATERAL_PIPELINE = "collateral_pipeline"
HYPOPERFUSION_PIPELINE = "hypoperfusion_pipeline"
STROKE_TRIAGE = "stroke_triage"
PIPELINE_NAMES: tuple[str, ...] = (COLLATERAL_PIPELINE, HYPOPERFUSION_PIPELINE, STROKE_TRIAGE)

# A network with several versions: the Python steps that read its model card, the pipelines that run it, and the
# names of the copies of both that reach one version (a request pins a version by calling the pinned pipeline).
CARD_READERS: dict[str, tuple[str, ...]] = {MROD_NET: (PREPROCESS_PERFUSION, POSTPROCESS_COLLATERAL),
                                            HYPOPERFUSION_UNET: (POSTPROCESS_HYPOPERFUSION,)}
PIPELINES_OF_NETWORK: dict[str, tuple[str, ...]] = {MROD_NET: (COLLATERAL_PIPELINE, STROKE_TRIAGE),
                                                    HYPOPERFUSION_UNET: (HYPOPERFUSION_PIPELINE, STROKE_TRIAGE)}
PINNED_SEPARATOR = "__"


def pinned(model: str, network: str, version: int | str) -> str:
    """The name of ``model`` (a pipeline or a card-reading step) pinned to ``network`` at ``version``."""
    return f"{model}{PINNED_SEPARATOR}{network}_v{version}"
