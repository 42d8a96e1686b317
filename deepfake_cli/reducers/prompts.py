"""`prompts`: append each image's CLIP similarities to a set of text prompts to its features.

Not a reduction: a feature transform of the same kind, registered here so that it travels the same
safe paths. `deepfake reduce F.h5 --method prompts --prompts FILE --out p.reducer` embeds the prompts
with the text tower of the features' own CLIP weights; `--write-features` writes the features with the
similarity columns appended (any classifier can use them), and `train --reducer p.reducer` builds the
step into a model that `predict` applies to raw images. A study uses it as `prompts:prompts=FILE`.
"""

from __future__ import annotations

from deepfake_cli.reducers import register_reducer
from deepfake_cli.registry import Entry, Param, boolean, lazy_attributes, lazy_class, optional

# the estimator lives in _prompts.py, imported (with scikit-learn) only when one is built or
# loaded, so listing the reducers stays fast; model files name it as a class of this module
__getattr__ = lazy_attributes("deepfake_cli.reducers._prompts", "PromptSimilarities")

register_reducer(Entry(
    "prompts", "append CLIP similarities to text prompts (not a reduction; CLIP features only)",
    lazy_class("deepfake_cli.reducers._prompts", "PromptSimilarities"),
    params=(Param("prompts", None, "prompts file, one prompt per line ('real: '/'fake: ' labels optional; default: "
                                   "the zero-shot pair)", optional(str)),
            Param("keep", True, "keep the features and append the similarities (false: only the similarities)",
                  boolean),
            Param("weights", None, "CLIP checkpoint holding the text tower, when the weights lookup would not find "
                                   "the one the features were made with", optional(str))),
    trusted_types=frozenset({"deepfake_cli.reducers.prompts.PromptSimilarities"}),
    capabilities=frozenset({"backbone"})))
