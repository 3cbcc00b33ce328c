"""scikit-learn's own estimator checks on RaidDetector.

RAID's labels are fixed, 0 (real) and 1 (generated): a feature store marks unknown rows
-1, and training on any other pair of labels could silently turn them into a class. The
checks below train on labels such as {1, 2} or {"one", "two"}, so they cannot apply; what
they test besides the labels (dtypes, array-likes, one feature) is tested with 0/1 labels
in test_detector.py.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from raid.svm.detector import RaidDetector

LABELS = "RAID labels are 0 (real) and 1 (generated); this check trains on labels {}"
EXPECTED_FAILURES = {
    "check_estimators_dtypes": LABELS.format("{1, 2}"),
    "check_dtype_object": LABELS.format("{0, 1, 2, 3} made binary as {k, k + 1}"),
    "check_classifier_data_not_an_array": LABELS.format("{1, 2}"),
    "check_classifiers_classes": LABELS.format("{'one', 'two'} and {1, 2}"),
    "check_fit2d_1feature": LABELS.format("{1, 2}"),
}


@parametrize_with_checks([RaidDetector(progress=False, backend="sklearn", device="cpu")],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
