"""Our estimators keep scikit-learn's contract: `parametrize_with_checks` runs every applicable check.

Small hyper-parameters keep the torch-trained ones fast; the checks' data is tiny (tens of rows).
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from deepfake_cli.classifiers import LinearProbe
from deepfake_cli.reducers import AutoencoderReducer, IdentityReducer, PCAReducer

ESTIMATORS = [
    LinearProbe(device="cpu"),
    IdentityReducer(),
    PCAReducer(dim=2),
    AutoencoderReducer(dim=2, hidden=(8,), epochs=5, batch_size=16, device="cpu"),
]


def expected_failures(estimator) -> dict[str, str]:
    """Checks each estimator is known to fail, with the reason (none at present)."""
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)
