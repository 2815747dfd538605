"""The numbers as a DICOM TID 1500 measurement report (Comprehensive 3D SR), each volume tied to its segment.

Reporting systems and PACS that read structured reports take the values from here, not from pixels: the
ADC core and hypoperfusion volumes (TID 1411, each referencing its segment of the SEG), and the mismatch
volume and ratio, the DEFUSE 3 and DAWN decisions and the collateral perfusion score estimate (TID 1501).
A decision the server withheld is coded as withheld, never as yes or no; a withheld hypoperfusion lesion has no
volume and no region here, only its coded status. Concepts with no standard code are
in the local scheme ``99COLLAT`` (declared in the object), as DICOM PS3.16 allows.
"""

from __future__ import annotations

from collections.abc import Sequence

from collat_contract.clinical import CORE_LABEL

from ..schema import Metrics
from .seg import SEGMENT_LABELS

SERIES_NUMBER = 9930
LOCAL_SCHEME = "99COLLAT"


def _local(value: str, meaning: str):
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=LOCAL_SCHEME, meaning=meaning)


def _codes():
    """The concepts the report uses (built on demand: highdicom is the optional dicom extra)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return {
        "volume": codes.SCT.Volume,
        "ml": hd.sr.CodedConcept(value="ml", scheme_designator="UCUM", meaning="milliliter"),
        "ratio": hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units"),
        "yes": codes.SCT.Yes, "no": codes.SCT.No,
        "withheld": _local("WITHHELD", "Withheld: the input failed a quality check"),
        "lesion_withheld": _local("LESIONWITHHELD", "Withheld: failed a plausibility check"),
        "not_assessed": _local("NOTASSESSED", "Not assessed: no stroke side and no ADC core"),
        "core": _local("ADCCORE", CORE_LABEL),
        "hypoperfusion": _local("HYPOPERF", "Predicted hypoperfusion lesion"),
        "mismatch_volume": _local("MISMATCHVOL", "Mismatch volume"),
        "mismatch_ratio": _local("MISMATCHRATIO", "Mismatch ratio"),
        "defuse3": _local("DEFUSE3", "DEFUSE 3 target mismatch"),
        "dawn": _local("DAWN", "DAWN clinical-core mismatch"),
        "cps": _local("CPS", "Collateral perfusion score estimate (0-5)"),
        "summary": _local("SUMMARY", "Stroke triage summary"),
        "brain_mr": hd.sr.CodedConcept(value="24590-2", scheme_designator="LN", meaning="MR Brain"),
    }


def _decision(name, decision, c):
    import highdicom as hd

    value = c["withheld"] if decision is None else c["yes"] if decision.eligible else c["no"]
    return hd.sr.QualitativeEvaluation(name=name, value=value)


def build_report(metrics: Metrics, evidence: Sequence, *, segmentation=None, algorithm: str, version: str,
                 research_only: bool):
    """A Comprehensive 3D SR of ``metrics``; ``evidence`` the instances it rests on (a source image, the SEG).
    ``segmentation`` (the SEG dataset) ties each volume to its segment, found by its label."""
    import highdicom as hd
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from pydicom.uid import generate_uid

    c = _codes()
    # An imported network (a network card) is named with its card's digest, so the report says which card made it.
    cards = [f"{m.name} v{m.version} {m.preset} card {card}" for m in metrics.models.values()
             if (card := (m.model_extra or {}).get("card_sha256"))]
    algorithm_id = hd.sr.AlgorithmIdentification(name=algorithm, version=version, parameters=cards or None)
    device = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept(value="121007", scheme_designator="DCM", meaning="Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["collat", algorithm, version]), name="collat", model_name=algorithm))
    groups = []
    h, collateral = metrics.hypoperfusion, metrics.collateral
    if h is not None:
        numbers = {} if segmentation is None else {str(d.SegmentLabel): int(d.SegmentNumber)
                                                   for d in segmentation.SegmentSequence}
        # A withheld lesion is no finding: no volume, no region; the summary says it was withheld.
        volumes = [("hypoperfusion", h.hypoperfusion_ml)] if h.lesion_reported else []
        for key, value in [*volumes, ("core", h.core_ml)]:
            number = numbers.get(SEGMENT_LABELS[0] if key == "hypoperfusion" else SEGMENT_LABELS[1])
            volume = [hd.sr.Measurement(name=c["volume"], value=float(value or 0.0), unit=c["ml"],
                                        algorithm_id=algorithm_id)]
            tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=c[key].meaning)
            # TID 1411: the volume of the SEG segment (an empty segment, a 0 mL core, has no frames to point at)
            if segmentation is not None and number is not None and value:
                groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking, finding_type=c[key], algorithm_id=algorithm_id, measurements=volume,
                    referenced_segment=hd.sr.ReferencedSegment.from_segmentation(segmentation, segment_number=number)))
            else:  # no SEG (a mosaic DWI): TID 1501, a measurement with no region to point at
                groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking, finding_type=c[key], algorithm_id=algorithm_id, measurements=volume))
    measurements, evaluations = [], []
    if h is not None and h.lesion_reported:
        measurements += [
            hd.sr.Measurement(name=c["mismatch_volume"], value=float(h.mismatch_ml or 0.0), unit=c["ml"],
                              algorithm_id=algorithm_id),
            hd.sr.Measurement(name=c["mismatch_ratio"], value=float(h.mismatch_ratio or 0.0), unit=c["ratio"],
                              algorithm_id=algorithm_id)]
    elif h is not None:  # said, not left out: withheld as implausible, or the network not run
        status = h.lesion_withheld.status if h.lesion_withheld else "withheld"
        evaluations.append(hd.sr.QualitativeEvaluation(
            name=c["hypoperfusion"], value=c["not_assessed" if status == "not_run" else "lesion_withheld"]))
    if h is not None:
        evaluations += [_decision(c["defuse3"], h.defuse3, c), _decision(c["dawn"], h.dawn, c)]
    if collateral is not None and collateral.cps_estimate is not None:
        measurements.append(hd.sr.Measurement(name=c["cps"], value=float(collateral.cps_estimate), unit=c["ratio"],
                                              algorithm_id=algorithm_id))
    elif collateral is not None:  # a withheld grade is said, not left out
        evaluations.append(hd.sr.QualitativeEvaluation(name=c["cps"], value=c["withheld"]))
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="stroke triage summary"),
        finding_type=c["summary"], algorithm_id=algorithm_id, measurements=measurements or None,
        qualitative_evaluations=evaluations or None))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=c["brain_mr"], imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=list(evidence), content=report, series_instance_uid=hd.UID(), series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="collat",
        series_description="collat: measurement report (volumes, decisions, CPS)",
        content_qualification="RESEARCH" if research_only else "PRODUCT",
        coding_schemes=[CodingSchemeIdentificationItem(
            designator=LOCAL_SCHEME, name="collat local concepts", responsible_organization="collat project")])
