"""Missing modalities predicted from the others: a known linear map is recovered, only missing rows change,
and an item missing two modalities stays missing."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.embed import impute_missing_modalities, l2_normalize
from genrec.embed.impute import ridge_fit


def test_ridge_fit_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5))
    w, b = rng.standard_normal((5, 3)), rng.standard_normal(3)
    weights, intercept = ridge_fit(x, x @ w + b, alpha=1e-8)
    np.testing.assert_allclose(weights, w, atol=1e-6)
    np.testing.assert_allclose(intercept, b, atol=1e-6)


def test_missing_behaviour_is_predicted_from_content():
    rng = np.random.default_rng(1)
    text = l2_normalize(rng.standard_normal((300, 8)))
    truth = l2_normalize(text @ rng.standard_normal((8, 4)))  # behaviour that content determines
    behaviour = truth.copy()
    cold = np.arange(0, 300, 10)
    behaviour[cold] = 0.0
    text_missing = 5  # lacks text as well: nothing to predict behaviour from
    behaviour[text_missing] = 0.0
    text_in = text.copy()
    text_in[text_missing] = 0.0
    before = {"text": text_in.copy(), "behaviour": behaviour.copy()}

    out = impute_missing_modalities({"text": text_in, "behaviour": behaviour}, alpha=1e-3)
    cosine = (out["behaviour"][cold] * truth[cold]).sum(axis=1)
    # predicted where it was missing (the map is linear up to the normalisation), and unit length
    assert cosine.mean() > 0.99 and cosine.min() > 0.95
    np.testing.assert_allclose(np.linalg.norm(out["behaviour"][cold], axis=1), 1.0, rtol=1e-5)
    warm = np.setdiff1d(np.arange(300), [*cold, text_missing])
    np.testing.assert_array_equal(out["behaviour"][warm], truth[warm])  # present rows untouched
    assert not out["behaviour"][text_missing].any() and not out["text"][text_missing].any()
    for m in before:  # the inputs are not modified
        np.testing.assert_array_equal(before[m], {"text": text_in, "behaviour": behaviour}[m])


def test_nothing_to_impute_and_too_few_to_fit():
    rng = np.random.default_rng(2)
    full = {
        "text": l2_normalize(rng.standard_normal((20, 4))),
        "image": l2_normalize(rng.standard_normal((20, 3))),
    }
    out = impute_missing_modalities(full)
    assert all(np.array_equal(out[m], full[m]) for m in full)
    sparse = {m: e.copy() for m, e in full.items()}
    sparse["image"][5:] = 0.0  # 5 items to fit on, 15 to fill
    with pytest.raises(ValueError, match="missing 'image' rows: only 5 items"):
        impute_missing_modalities(sparse)
