"""Every reducer on features of real images: shapes, reconstruction, seeding, safe save/load."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from deepfake_cli.store.artifacts import load_reducer, save_reducer
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.reducers import REDUCERS, AutoencoderReducer, create_reducer, list_reducers
from tests.conftest import example_set
from tests.helpers import pixel_stats


@pytest.fixture(scope="module")
def X():
    """Pixel statistics of 40 real and generated CIFAKE images, with 4 derived columns so PCA has redundancy."""
    root = example_set("cifake_sd14")
    rows = [pixel_stats(p) for cls in ("real", "fake") for p in sorted((root / cls).iterdir())[:20]]
    base = np.array(rows, dtype=np.float64)
    return np.hstack([base, base[:, :4] * 2 + base[:, 4:8]]).astype(np.float32)


def test_registry():
    rows = list_reducers()
    # the built-ins first; then the other modules' entries (tests/test_ae_search.py, tests/test_zero_shot.py),
    # and any later one: each name once
    names = [r["name"] for r in rows]
    assert names[:3] == ["none", "pca", "autoencoder"] and {"prompts", "autoencoder-search"} <= set(names)
    assert len(set(names)) == len(names)
    assert [p["name"] for p in rows[2]["params"]] == ["dim", "hidden", "epochs", "lr", "batch_size", "val_fraction",
                                                      "patience", "dropout"]
    assert rows[2]["capabilities"] == ["device", "random_state"] and rows[1]["capabilities"] == ["random_state"]
    with pytest.raises(DeepfakeError, match="Unknown reducer 'tsne'; choose from none, pca, autoencoder"):
        create_reducer("tsne")
    with pytest.raises(DeepfakeError, match="Reducer 'none' does not take dim; it takes no parameters"):
        create_reducer("none", dim=3)
    with pytest.raises(DeepfakeError, match="Reducer 'pca' does not take device; it takes dim, variance, random_state"):
        create_reducer("pca", device="cpu")
    ae = create_reducer("autoencoder", hidden=(8, 4), dim=None, device="cpu")
    assert (ae.hidden, ae.dim, ae.device, ae.epochs) == ((8, 4), 32, "cpu", 200)  # None: the declared default
    assert REDUCERS.parse_params("autoencoder", ["hidden=64,16", "lr=0.01"]) == {"hidden": (64, 16), "lr": 0.01}


def test_none_is_identity(X):
    r = create_reducer("none").fit(X)
    np.testing.assert_array_equal(r.transform(X), X)
    assert r.reconstruction_error(X) == {"mse": 0.0, "relative": 0.0}


def test_pca_dim_and_variance(X):
    r = create_reducer("pca", dim=5).fit(X)
    Z = r.transform(X)
    assert Z.shape == (len(X), 5)
    err = r.reconstruction_error(X)
    # for PCA the unexplained fraction of the variance is exactly the relative reconstruction error
    assert err["relative"] == pytest.approx(1 - r.explained_variance_ratio_, abs=1e-6)
    v = create_reducer("pca", variance=0.9).fit(X)
    assert v.explained_variance_ratio_ >= 0.9
    fewer = create_reducer("pca", dim=v.n_components_ - 1).fit(X)
    assert fewer.explained_variance_ratio_ < 0.9  # the smallest number of components that reaches 90%
    with pytest.raises(ValueError):
        create_reducer("pca", dim=1000).fit(X)


def test_autoencoder_learns_seeded_and_stops_early(X):
    kw = dict(dim=4, hidden=(32,), epochs=300, lr=3e-3, batch_size=16, patience=15, random_state=0, device="cpu")
    a = AutoencoderReducer(**kw).fit(X)
    Z = a.transform(X)
    assert Z.shape == (len(X), 4)
    assert all(isinstance(w, np.ndarray) for w in a.encoder_weights_ + a.decoder_weights_)
    err = a.reconstruction_error(X)
    assert err["relative"] < 0.5, err  # much better than predicting the mean
    assert a.epochs_run_ < 300  # early stopping on the held-out part ended it
    b = AutoencoderReducer(**kw).fit(X)
    np.testing.assert_allclose(b.transform(X), Z, atol=1e-6)
    c = AutoencoderReducer(**dict(kw, random_state=1)).fit(X)
    assert not np.allclose(c.transform(X), Z)


@pytest.mark.parametrize("name,params", [("none", {}), ("pca", {"dim": 3}),
                                         ("autoencoder", {"dim": 3, "hidden": (16,), "epochs": 20})])
def test_saved_reducer_transforms_identically(tmp_path, X, name, params):
    r = create_reducer(name, **params).fit(X)
    path = save_reducer(tmp_path / f"{name}.reducer", r, {"method": name})
    loaded = load_reducer(path)
    assert loaded.meta == {"method": name}
    np.testing.assert_allclose(loaded.estimator.transform(X), r.transform(X), atol=1e-12)


def test_bad_input_is_refused_in_scikit_learn_terms(X):
    for name, params in (("none", {}), ("pca", {"dim": 3}), ("autoencoder", {"dim": 3, "hidden": (8,), "epochs": 2})):
        r = create_reducer(name, **params)
        with pytest.raises(NotFittedError):
            r.transform(X)
        r.fit(X)
        with pytest.raises(ValueError, match=f"X has 5 features, but {type(r).__name__} is expecting {X.shape[1]}"):
            r.transform(X[:, :5])
        bad = X.copy()
        bad[0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            create_reducer(name, **params).fit(bad)
    with pytest.raises(ValueError, match="needs at least 4 images"):
        create_reducer("autoencoder", dim=2).fit(X[:3])
    with pytest.raises(ValueError, match=r"dim must be between 1 and 17 for PCA \(images: n_samples = 40"):
        create_reducer("pca", dim=18).fit(X)
