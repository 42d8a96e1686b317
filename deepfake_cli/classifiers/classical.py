"""The scikit-learn classifiers: trees and ensembles, LDA, kNN, SVM, naive Bayes, gradient boosting.

Each factory imports scikit-learn lazily and takes exactly the entry's declared parameters (plus
`random_state` where the entry has that capability); the defaults live on the `Param`s. Where the
estimator takes exactly those, the factory is `registry.lazy_class`; a function where it fixes more.
"""

from __future__ import annotations

from deepfake_cli.classifiers import register_classifier
from deepfake_cli.registry import Entry, Param, float_or, lazy_class, optional

SEEDED = frozenset({"random_state"})
SCALED = frozenset({"scaled"})
_TREE = frozenset({"sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._tree.Tree"})


def _bagging(n_estimators, random_state):
    from sklearn.ensemble import BaggingClassifier

    return BaggingClassifier(n_estimators=n_estimators, random_state=random_state, n_jobs=1)


def _tree(max_depth, random_state):
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=max_depth, random_state=random_state)


def _forest(n_estimators, max_depth, random_state):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=random_state, n_jobs=1)


def _gb(max_iter, learning_rate, min_samples_leaf, random_state):
    from sklearn.ensemble import HistGradientBoostingClassifier

    # the histogram variant: plain GradientBoosting is far too slow on 1000+ dimensional features
    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate,
                                          min_samples_leaf=min_samples_leaf, early_stopping=False,
                                          random_state=random_state)


_N_TREES = "number of trees"
_DEPTH = "maximum tree depth (none: grow until the leaves are pure)"

register_classifier(Entry(
    "bagging", "bagged decision trees", _bagging,
    params=(Param("n_estimators", 20, _N_TREES, int),),
    trusted_types=_TREE | {"sklearn.ensemble._bagging.BaggingClassifier"}, capabilities=SEEDED))
register_classifier(Entry(
    "decision-tree", "one decision tree", _tree,
    params=(Param("max_depth", None, _DEPTH, optional(int)),),
    trusted_types=_TREE, capabilities=SEEDED))
register_classifier(Entry(
    "random-forest", "random forest", _forest,
    params=(Param("n_estimators", 200, _N_TREES, int), Param("max_depth", None, _DEPTH, optional(int))),
    trusted_types=_TREE | {"sklearn.ensemble._forest.RandomForestClassifier"}, capabilities=SEEDED))
# shrinkage keeps the covariance invertible when features outnumber images; ShrinkageLDA gives
# scikit-learn's LinearDiscriminantAnalysis(solver="lsqr") decision function without building or
# storing the d x d covariance (model files of kilobytes, not 76 MB at 3,088 dimensions)
register_classifier(Entry(
    "lda", "linear discriminant analysis with shrinkage", lazy_class("deepfake_cli.classifiers._lda", "ShrinkageLDA"),
    params=(Param("shrinkage", "auto", "covariance shrinkage: auto (Ledoit-Wolf), a number in [0, 1], or none",
                  optional(float_or("auto"))),),
    # scikit-learn's class stays trusted: model files written before ShrinkageLDA hold it
    trusted_types=frozenset({"deepfake_cli.classifiers._lda.ShrinkageLDA",
                             "sklearn.discriminant_analysis.LinearDiscriminantAnalysis"}), capabilities=SCALED))

_KNN_TYPES = frozenset({"sklearn.neighbors._classification.KNeighborsClassifier", "sklearn.neighbors._kd_tree.KDTree",
                        "sklearn.neighbors._ball_tree.BallTree", "sklearn.metrics._dist_metrics.EuclideanDistance64"})
for _k in (1, 3, 5):
    register_classifier(Entry(
        f"knn{_k}", f"{_k}-nearest neighbour{'s' if _k > 1 else ''}",
        lazy_class("sklearn.neighbors", "KNeighborsClassifier"),
        params=(Param("n_neighbors", _k, "number of neighbours that vote", int),),
        trusted_types=_KNN_TYPES, capabilities=SCALED,
        at_scale="no switch: exact brute-force search in batches (prediction time linear in n); the model keeps "
                 "every training image's features (n x d float32)"))

SVM_MAX_EXACT = 20_000  # libsvm fits 20,000 x 1,280 in 7.3 min on 2 cores, ~n^2.2 beyond (docs/RESULTS.md)
SVM_LANDMARKS = 2000
register_classifier(Entry(
    "svm", "support vector machine (RBF kernel), sigmoid-calibrated",
    lazy_class("deepfake_cli.classifiers._svm", "SVMClassifier"),
    params=(Param("C", 1.0, "regularisation: larger fits the training images more closely", float),
            Param("gamma", "scale", "RBF kernel width: scale, auto or a number", float_or("scale", "auto")),
            Param("kernel", "rbf", "rbf | linear | poly | sigmoid"),
            Param("solver", "auto", "exact (libsvm) | nystroem (kernel approximation + linear SVM) | auto (exact up "
                                    "to max_exact training images)"),
            Param("max_exact", SVM_MAX_EXACT, "largest training set the auto solver fits exactly", int),
            Param("n_components", SVM_LANDMARKS, "Nystroem landmarks (kernel approximation rank)", int)),
    trusted_types=frozenset({"deepfake_cli.classifiers._svm.SVMClassifier",
                             "sklearn.calibration.CalibratedClassifierCV", "sklearn.calibration._CalibratedClassifier",
                             "sklearn.calibration._SigmoidCalibration", "sklearn.svm._classes.SVC",
                             "sklearn.svm._classes.LinearSVC", "sklearn.kernel_approximation.Nystroem",
                             "sklearn.pipeline.Pipeline"}),
    capabilities=SCALED | SEEDED,
    at_scale=f"past {SVM_MAX_EXACT:,} training images (solver=auto): Nystroem kernel approximation "
             f"({SVM_LANDMARKS:,} landmarks) + linear SVM, linear in n instead of quadratic to cubic"))
register_classifier(Entry(
    "naive-bayes", "Gaussian naive Bayes", lazy_class("sklearn.naive_bayes", "GaussianNB"),
    params=(Param("var_smoothing", 1e-9, "fraction of the largest variance added to every variance", float),),
    trusted_types=frozenset({"sklearn.naive_bayes.GaussianNB"})))
register_classifier(Entry(
    "gradient-boosting", "histogram gradient boosting", _gb,
    params=(Param("max_iter", 200, "boosting rounds", int),
            Param("learning_rate", 0.1, "shrinkage of each round", float),
            # 5 (scikit-learn's default is 20) so that the small benchmark sets (tens of images) can split at all
            Param("min_samples_leaf", 5, "fewest images in a leaf", int)),
    trusted_types=frozenset({
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.link.LogitLink", "sklearn._loss.link.Interval",
        "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn.preprocessing._label.LabelEncoder"}),
    capabilities=SEEDED,
    at_scale="no switch needed: the histogram method already is the scalable one (binned features, linear in n)"))
