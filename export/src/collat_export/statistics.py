"""Agreement between a method and a reference over a cohort, as the studies report it: Lin's concordance
correlation and Bland-Altman limits for volumes, sensitivity and specificity for yes/no decisions, and Cohen's
weighted kappa with the confusion matrix for ordinal grades. numpy only; ``None`` where too few cases make a figure
meaningless (a sensitivity with no positive reference), so a report prints "n/a" rather than a misleading number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRADES = 6  # CPS 0-5


def weighted_kappa(truth: Sequence[int] | np.ndarray, estimate: Sequence[int] | np.ndarray,
                   classes: int = GRADES) -> float:
    """Cohen's kappa with quadratic weights (1 for perfect agreement; 0 for chance)."""
    observed = confusion(truth, estimate, classes).astype(np.float64)
    total = observed.sum()
    if total == 0:
        return float("nan")
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    i, j = np.indices((classes, classes))
    weights = (i - j) ** 2 / (classes - 1) ** 2
    denominator = (weights * expected).sum()
    return float(1.0 - (weights * observed).sum() / denominator) if denominator > 0 else 1.0


def confusion(truth: Sequence[int] | np.ndarray, estimate: Sequence[int] | np.ndarray,
              classes: int = GRADES) -> np.ndarray:
    """Rows: the reference's class; columns: the estimate's."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, dtype=int), np.asarray(estimate, dtype=int)), 1)
    return matrix


def lins_ccc(estimate: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray) -> float | None:
    """Lin's concordance correlation coefficient: Pearson's r penalised for bias and scale (population moments,
    as Lin 1989 defines it). None below two pairs; 1.0 for identical constant series."""
    x, y = np.asarray(estimate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if x.size < 2:
        return None
    covariance = float(np.mean((x - x.mean()) * (y - y.mean())))
    denominator = float(x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    return 1.0 if denominator == 0 else 2.0 * covariance / denominator


def bland_altman(estimate: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray) -> dict | None:
    """Mean difference (estimate - reference), its sample SD and the 95 % limits of agreement (mean +- 1.96 SD).
    None below two pairs."""
    x, y = np.asarray(estimate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if x.size < 2:
        return None
    diff = x - y
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    return {"pairs": int(x.size), "mean_difference": mean, "sd_difference": sd,
            "lower_limit": mean - 1.96 * sd, "upper_limit": mean + 1.96 * sd}


def binary_agreement(estimate: Sequence[bool], reference: Sequence[bool]) -> dict:
    """Counts and rates of a yes/no decision against the reference; a rate is None when its denominator is 0."""
    est, ref = np.asarray(estimate, dtype=bool), np.asarray(reference, dtype=bool)
    if est.shape != ref.shape:
        raise ValueError(f"{est.size} decisions for {ref.size} references")
    tp, fp = int(np.sum(est & ref)), int(np.sum(est & ~ref))
    fn, tn = int(np.sum(~est & ref)), int(np.sum(~est & ~ref))

    def rate(num: int, den: int) -> float | None:
        return num / den if den else None

    return {"cases": int(est.size), "true_positive": tp, "false_positive": fp, "false_negative": fn,
            "true_negative": tn, "sensitivity": rate(tp, tp + fn), "specificity": rate(tn, tn + fp),
            "accuracy": rate(tp + tn, int(est.size))}


def grade_agreement(estimate: Sequence[int], reference: Sequence[int], classes: int = GRADES) -> dict:
    """Exact and within-one agreement (overall and per reference grade), weighted kappa and the confusion matrix
    (rows: reference) of ordinal grades."""
    est, ref = np.asarray(estimate, dtype=int), np.asarray(reference, dtype=int)
    if est.size == 0:
        return {"cases": 0, "exact": None, "within_one": None, "weighted_kappa": None,
                "confusion": confusion([], [], classes).tolist(), "per_grade": {}}
    per_grade = {str(g): {"cases": int((ref == g).sum()), "exact": float(np.mean(est[ref == g] == g)),
                          "within_one": float(np.mean(np.abs(est[ref == g] - g) <= 1))}
                 for g in range(classes) if (ref == g).any()}
    return {"cases": int(est.size), "exact": float(np.mean(est == ref)),
            "within_one": float(np.mean(np.abs(est - ref) <= 1)),
            "weighted_kappa": weighted_kappa(ref, est, classes), "confusion": confusion(ref, est, classes).tolist(),
            "per_grade": per_grade}
