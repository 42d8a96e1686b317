"""Classifier registry: `create_classifier(name, random_state, **params)` and `list_classifiers()`.

Every classifier is a scikit-learn estimator with `predict_proba`; column 1 is p(fake). Each module of
this package registers its entries with `register_classifier(Entry(...))` when imported, and the package
imports all of its modules (in name order, which is also the order of `all`), so adding a classifier is
one new file here. An entry declares its hyper-parameters, the skops types its fitted estimator adds to
the model-file allowlist, and its capabilities (`scaled`: train puts a StandardScaler in front;
`device`; `random_state`; `opt_in`: left out of `all`; see `deepfake_cli.registry`).
"""

from __future__ import annotations

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.registry import Entry, Param, Registry, import_modules, lazy_attributes, split_pair

CLASSIFIERS = Registry("classifier")


def register_classifier(entry: Entry) -> Entry:
    return CLASSIFIERS.register(entry)


def create_classifier(name: str, random_state: int = 0, **params):
    """A fresh, unfitted estimator for `name`; `random_state` goes to the ones that take a seed."""
    if "random_state" in CLASSIFIERS.get(name).capabilities:
        params["random_state"] = random_state
    return CLASSIFIERS.create(name, **params)


def list_classifiers() -> list[dict]:
    """Name, description, scaled, capabilities and hyper-parameters of each classifier, in registry order."""
    return [{"name": e.name, "description": e.description, "scaled": "scaled" in e.capabilities,
             "capabilities": sorted(e.capabilities), "at_scale": e.at_scale,
             "params": [{"name": p.name, "default": p.default, "help": p.help} for p in e.params]}
            for e in CLASSIFIERS.entries()]


def classifier_names() -> list[str]:
    return CLASSIFIERS.names()


def parse_classifier_names(spec: str) -> list[str]:
    """`"svm,lda"` or `"all"` -> validated list of names (order kept, duplicates dropped)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise DeepfakeError("No classifier given; use --classifier NAME[,NAME...] or 'all'.")
    if "all" in names:  # every classifier but the opt-in ones, which apply only to some features
        return [e.name for e in CLASSIFIERS.entries() if "opt_in" not in e.capabilities]
    unknown = [n for n in names if n not in CLASSIFIERS]
    if unknown:
        raise DeepfakeError(f"Unknown classifier {', '.join(map(repr, unknown))}; "
                            f"choose from {', '.join(classifier_names())} or 'all'.")
    return list(dict.fromkeys(names))


def parse_classifier_params(names: list[str], pairs: list[str]) -> dict[str, dict]:
    """CLI `--param` pairs -> {classifier: {key: typed value}} for the classifiers being trained.

    `KEY=VALUE` goes to every one of `names` that takes KEY; `NAME.KEY=VALUE` to classifier NAME only.
    A key that none of them takes is refused with what each one takes.
    """
    out: dict[str, dict] = {n: {} for n in names}
    for pair in pairs:
        key, value = split_pair(pair)
        scope, dot, bare = key.rpartition(".")
        if dot:
            if scope not in names:
                raise DeepfakeError(f"--param {pair}: '{scope}' is not among the classifiers being trained "
                                    f"({', '.join(names)}).")
            targets = [scope]
        else:
            targets = [n for n in names if CLASSIFIERS.get(n).param(bare) is not None]
            if not targets:
                takes = "; ".join(f"{n} takes {', '.join(p.name for p in CLASSIFIERS.get(n).params) or 'nothing'}"
                                  for n in names)
                raise DeepfakeError(f"--param {pair}: no chosen classifier takes '{bare}' ({takes}).")
        for name in targets:
            out[name].update(CLASSIFIERS.parse_params(name, [f"{bare}={value}"]))
    return {n: p for n, p in out.items() if p}


def needs_scaling(name: str) -> bool:
    return "scaled" in CLASSIFIERS.get(name).capabilities


# every module of this package registers its classifiers; adding one is adding a file
import_modules(__name__, __path__)

# model files of 0.1.0 name the probe `deepfake_cli.classifiers.LinearProbe`; skops resolves that here (lazily:
# listing the classifiers imports no scikit-learn)
__getattr__ = lazy_attributes("deepfake_cli.classifiers._linear_probe", "LinearProbe")

__all__ = ["CLASSIFIERS", "Entry", "LinearProbe", "Param", "classifier_names", "create_classifier",
           "list_classifiers", "needs_scaling", "parse_classifier_names", "parse_classifier_params",
           "register_classifier"]
