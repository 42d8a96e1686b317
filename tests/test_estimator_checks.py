"""Our estimators keep scikit-learn's contract: `parametrize_with_checks` runs every applicable check.

Small hyper-parameters keep the torch-trained ones fast; the checks' data is tiny (tens of rows).
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from deepfake_cli.classifiers import CLASSIFIERS
from deepfake_cli.classifiers._svm import SVMClassifier
from deepfake_cli.classifiers.linear_head import LinearHead
from deepfake_cli.classifiers.zero_shot import ZeroShotClassifier
from deepfake_cli.reducers import REDUCERS
from deepfake_cli.reducers.prompts import PromptSimilarities
from tests.helpers import capability_kwargs

# small hyper-parameters for the torch-trained and searching ones; any other entry is built with its defaults
SMALL = {"fusion": {"proj_dim": 16, "epochs": 60},  # members=None: all columns are one member
         "pca": {"dim": 2},
         "autoencoder": {"dim": 2, "hidden": (8,), "epochs": 5, "batch_size": 16},
         "autoencoder-search": {"trials": 2, "epoch_choices": (3,), "widths": (8,), "dims": (2,)}}


def _ours(registry) -> list:
    """Every registered estimator whose class is this package's (scikit-learn's own are tested upstream),
    built as the registry builds it, so a new classifier or reducer is checked without editing a list."""
    built = [registry.create(e.name, **capability_kwargs(e), **SMALL.get(e.name, {})) for e in registry.entries()]
    return [est for est in built if type(est).__module__.startswith("deepfake_cli.")]


ESTIMATORS = [*_ours(CLASSIFIERS), *_ours(REDUCERS),
              SVMClassifier(solver="nystroem", n_components=20, random_state=0)]  # svm's path on large sets

# The text-prompt estimators cannot be fitted on the checks' data: `fit` needs the features' CLIP backbone
# (`backbone`, which train / reduce hand over from the feature file) and loads its text tower from the
# weights file. Every check that fits them fails for that one reason; their behaviour is tested on a
# random-weights CLIP in its real checkpoint layout in tests/test_zero_shot.py.
_NEEDS_CLIP = "fit needs the features' CLIP backbone and its text tower (tests/test_zero_shot.py tests it)"
_FITTING_CHECKS = [
    "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
]
_FITTING_CHECKS_CLASSIFIER = [
    "check_classifier_data_not_an_array", "check_classifiers_classes", "check_classifiers_train",
    "check_classifiers_regression_target", "check_supervised_y_2d", "check_decision_proba_consistency",
    "check_requires_y_none",
]
_FITTING_CHECKS_TRANSFORMER = [
    "check_transformer_data_not_an_array", "check_transformer_general", "check_transformer_preserve_dtypes",
]


# The zoo's fixed head learns nothing: built without a published head's weights (as the registry builds it),
# `fit` refuses, so every check that fits it fails for that one reason; with weights it is tested against the
# papers' computation in tests/test_zoo.py.
_FIXED_HEAD = "a published head learns nothing: fit without its weights refuses (tests/test_zoo.py tests it)"
_HEAD_CHECKS = ['check_classifier_data_not_an_array', 'check_classifiers_classes', 'check_classifiers_regression_target', 'check_classifiers_train', 'check_complex_data', 'check_decision_proba_consistency', 'check_dict_unchanged', 'check_dont_overwrite_parameters', 'check_dtype_object', 'check_estimator_sparse_array', 'check_estimator_sparse_matrix', 'check_estimator_sparse_tag', 'check_estimators_dtypes', 'check_estimators_empty_data_messages', 'check_estimators_fit_returns_self', 'check_estimators_nan_inf', 'check_estimators_overwrite_params', 'check_estimators_pickle', 'check_estimators_unfitted', 'check_f_contiguous_array_estimator', 'check_fit2d_1feature', 'check_fit2d_1sample', 'check_fit2d_predict1d', 'check_fit_check_is_fitted', 'check_fit_idempotent', 'check_fit_score_takes_y', 'check_methods_sample_order_invariance', 'check_methods_subset_invariance', 'check_n_features_in', 'check_n_features_in_after_fitting', 'check_pipeline_consistency', 'check_positive_only_tag_during_fit', 'check_readonly_memmap_input', 'check_requires_y_none', 'check_supervised_y_2d']


def expected_failures(estimator) -> dict[str, str]:
    """Checks each estimator is known to fail, with the reason: the text-prompt ones and the fixed head."""
    if isinstance(estimator, LinearHead):
        return dict.fromkeys(_HEAD_CHECKS, _FIXED_HEAD)
    if isinstance(estimator, ZeroShotClassifier):
        return dict.fromkeys(_FITTING_CHECKS + _FITTING_CHECKS_CLASSIFIER, _NEEDS_CLIP)
    if isinstance(estimator, PromptSimilarities):
        return dict.fromkeys(_FITTING_CHECKS + _FITTING_CHECKS_TRANSFORMER, _NEEDS_CLIP)
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)
