"""The model zoo: one pipeline interface, seeded, fold-local preprocessing, picklable MLP."""

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from trader_runtime.models.mlp import LightningMLPClassifier
from trader_runtime.models.zoo import DEFAULT_PARAMS, FAMILIES, Family, make_model

# small-data overrides: the defaults are sized for ~300k rows
SMALL: dict[Family, dict[str, object]] = {
    "random_forest": {"n_estimators": 20, "min_samples_leaf": 5, "max_samples": 0.5},
    "xgboost": {"n_estimators": 30, "min_child_weight": 1.0},
    "lightgbm": {"n_estimators": 30, "min_child_samples": 10},
    "mlp": {"max_epochs": 3, "batch_size": 128},
}
N_FEATURES = 6


def _data(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with a trend over rows (so a fold's statistics differ from the full data's),
    some NaN, and a target that depends on the first two features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)) + np.linspace(0.0, 3.0, n)[:, None]
    y = (X[:, 0] - X[:, 1] + rng.normal(size=n) > 0).astype(np.int64)
    X[rng.random(X.shape) < 0.03] = np.nan
    return X, y


def _fit(family: Family, X: Any, y: np.ndarray, seed: int = 0, **params: object) -> Pipeline:
    return make_model(family, {**SMALL[family], **params}, seed=seed).fit(X, y)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_an_impute_scale_model_pipeline_with_its_defaults(family: Family) -> None:
    model = make_model(family, seed=7)
    assert [name for name, _ in model.steps] == ["impute", "scale", "model"]
    assert model.named_steps["impute"].strategy == "median"
    estimator_params = model.named_steps["model"].get_params()
    for key, value in DEFAULT_PARAMS[family].items():
        assert estimator_params[key] == value
    assert estimator_params["random_state"] == 7
    overridden = make_model(family, {"learning_rate": 0.5} if family != "random_forest" else {})
    if family != "random_forest":
        assert overridden.named_steps["model"].get_params()["learning_rate"] == 0.5


def test_bad_families_and_seed_params_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        make_model("svm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        make_model("lightgbm", {"random_state": 3})


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_fits_and_predicts_probabilities(family: Family) -> None:
    X, y = _data()
    model = _fit(family, X[:1000], y[:1000])
    proba = model.predict_proba(X[1000:])
    assert proba.shape == (200, 2)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert list(model.classes_) == [0, 1]
    assert set(model.predict(X[1000:])) <= {0, 1}
    # it learned something: target depends on x0 - x1
    assert np.corrcoef(proba[:, 1], np.nan_to_num(X[1000:, 0] - X[1000:, 1]))[0, 1] > 0.3


@pytest.mark.parametrize("family", FAMILIES)
def test_reruns_with_the_same_seed_give_identical_probabilities(family: Family) -> None:
    X, y = _data()
    first = _fit(family, X, y, seed=3).predict_proba(X)
    again = _fit(family, X, y, seed=3).predict_proba(X)
    np.testing.assert_array_equal(first, again)
    other = _fit(family, X, y, seed=4).predict_proba(X)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("family", FAMILIES)
def test_pandas_and_numpy_inputs_give_the_same_probabilities(family: Family) -> None:
    X, y = _data()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(N_FEATURES)])
    from_numpy = _fit(family, X, y).predict_proba(X)
    from_pandas = _fit(family, frame, y).predict_proba(frame)
    np.testing.assert_array_equal(from_numpy, from_pandas)


@pytest.mark.parametrize("family", FAMILIES)
def test_preprocessing_statistics_come_from_the_training_fold_only(family: Family) -> None:
    X, y = _data()
    fold = slice(0, 600)
    model = _fit(family, X[fold], y[fold])
    medians = np.nanmedian(X[fold], axis=0)
    np.testing.assert_allclose(model.named_steps["impute"].statistics_, medians)
    imputed = np.where(np.isnan(X[fold]), medians, X[fold])
    scale = model.named_steps["scale"]
    np.testing.assert_allclose(scale.mean_, imputed.mean(axis=0))
    np.testing.assert_allclose(scale.scale_, imputed.std(axis=0))
    full = np.nanmean(X, axis=0)
    assert np.all(np.abs(scale.mean_ - full) > 0.5)  # the trend: the full data's mean is higher


@pytest.mark.parametrize("family", FAMILIES)
def test_fitted_pipelines_survive_pickle_and_cloudpickle(family: Family) -> None:
    X, y = _data()
    model = _fit(family, X, y)
    expected = model.predict_proba(X)
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        np.testing.assert_array_equal(loads(dumps(model)).predict_proba(X), expected)


def test_the_forest_adds_trees_in_order_and_matches_scikit_learn() -> None:
    X, y = _data()
    model = _fit("random_forest", X, y)
    forest = model.named_steps["model"]
    assert isinstance(forest, RandomForestClassifier)
    Xt = model[:-1].transform(X)
    np.testing.assert_allclose(
        forest.predict_proba(Xt), RandomForestClassifier.predict_proba(forest, Xt), atol=1e-12
    )


def test_mlp_is_a_sklearn_classifier_with_any_two_labels() -> None:
    X, y = _data()
    labels = np.where(y == 1, 7, 3)
    model = _fit("mlp", X, labels)
    assert list(model.classes_) == [3, 7]
    assert set(model.predict(X)) <= {3, 7}
    with pytest.raises(ValueError, match="exactly 2 classes"):
        _fit("mlp", X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="features"):
        model.named_steps["model"].predict_proba(np.zeros((2, N_FEATURES + 1)))


def test_mlp_writes_no_files_and_prints_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    X, y = _data()
    _fit("mlp", X, y, max_epochs=2)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert list(tmp_path.iterdir()) == []


def test_mlp_stops_early_on_noise() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4000, 20))
    y = rng.integers(0, 2, 4000)
    clf = LightningMLPClassifier(
        hidden_units=128, dropout=0.0, learning_rate=1e-2, max_epochs=30, patience=2, batch_size=64
    ).fit(X, y)
    assert clf.n_epochs_ < 30
    assert clf.n_epochs_ == clf.best_epoch_ + 1 + 2  # stopped `patience` epochs after the best
    assert len(clf.val_losses_) == clf.n_epochs_


def test_mlp_validates_on_the_last_rows_and_never_trains_on_them() -> None:
    """The relation flips in the last 20% of the rows: if those rows are the validation slice,
    the validation loss gets worse from the first epoch on (early stop at once) and the model
    predicts them backwards; were they trained on or validation drawn elsewhere, neither holds."""
    rng = np.random.default_rng(6)
    n = 5000
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    tail = slice(int(n * 0.8), n)
    y[tail] = 1 - y[tail]
    clf = LightningMLPClassifier(
        validation_fraction=0.2, max_epochs=10, patience=2, batch_size=256, dropout=0.0
    ).fit(X, y)
    assert clf.best_epoch_ == 0
    assert clf.n_epochs_ == 3
    assert np.all(np.diff(clf.val_losses_) > 0)
    head_auc_sign = np.corrcoef(clf.predict_proba(X[: int(n * 0.8)])[:, 1], y[: int(n * 0.8)])
    tail_auc_sign = np.corrcoef(clf.predict_proba(X[tail])[:, 1], y[tail])
    assert head_auc_sign[0, 1] > 0.3
    assert tail_auc_sign[0, 1] < -0.3


def test_mlp_without_validation_runs_every_epoch() -> None:
    X, y = _data()
    clf = LightningMLPClassifier(validation_fraction=0.0, max_epochs=3, batch_size=256)
    clf.fit(np.nan_to_num(X), y)
    assert clf.n_epochs_ == 3
    assert clf.best_epoch_ == -1
    assert clf.val_losses_ == []


def test_a_pickled_mlp_predicts_in_a_fresh_process_without_lightning(tmp_path: Path) -> None:
    X, y = _data()
    model = _fit("mlp", X, y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", model.predict_proba(X))
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    script = (
        "import pickle, sys, numpy as np\n"
        f"d = {str(tmp_path)!r}\n"
        "model = pickle.load(open(d + '/model.pkl', 'rb'))\n"
        "got = model.predict_proba(np.load(d + '/X.npy'))\n"
        "assert np.array_equal(got, np.load(d + '/expected.npy'))\n"
        "assert 'pytorch_lightning' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_mlp_results_do_not_depend_on_the_callers_torch_threads() -> None:
    import torch

    X, y = _data()
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(_fit("mlp", X, y).predict_proba(X))
            assert torch.get_num_threads() == threads  # the caller's setting is restored
        np.testing.assert_array_equal(*results)
    finally:
        torch.set_num_threads(before)


def test_mlp_probabilities_are_its_torch_forward_pass_to_float32_precision() -> None:
    import torch

    X, y = _data()
    pipeline = _fit("mlp", X, y)
    clf = pipeline.named_steps["model"]
    z = pipeline[:-1].transform(X).astype(np.float32)
    with torch.inference_mode():
        clf.module_.eval()
        expected = torch.sigmoid(clf.module_(torch.from_numpy(z)).squeeze(1)).double().numpy()
    got = pipeline.predict_proba(X)[:, 1]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_mlp_scores_a_row_alone_as_in_a_batch_and_a_refit_scores_with_its_new_weights() -> None:
    X, y = _data()
    pipeline = _fit("mlp", X, y)
    batch = pipeline.predict_proba(X[:40])
    for i in range(40):  # the live engine scores one row; the backtest scores batches
        assert np.array_equal(pipeline.predict_proba(X[i : i + 1]), batch[i : i + 1])
    X2, y2 = _data(seed=5)
    pipeline.fit(X2, y2)  # the same estimator refit: its cached weights must not survive
    fresh = _fit("mlp", X2, y2)
    np.testing.assert_array_equal(pipeline.predict_proba(X), fresh.predict_proba(X))
    assert not np.array_equal(pipeline.predict_proba(X[:40]), batch)
