"""A scikit-learn classifier wrapping a small feed-forward network trained with PyTorch Lightning.

Training runs on CPU, seeded and with deterministic algorithms, so a refit on the same data gives
identical probabilities. Early stopping watches the validation loss on the LAST
``validation_fraction`` of the rows as given (callers pass training rows in time order, so this is
the most recent slice), and the weights of the best epoch are kept. Lightning writes nothing: no
logger, no checkpoints, no progress bar, no model summary, and its console messages are silenced.

The fitted estimator keeps only a plain ``nn.Sequential`` (``module_``), never the Trainer, so it
pickles (pickle or cloudpickle, as MLflow's sklearn flavour does). Lightning is imported only to
train: loading a fitted model needs torch alone. Probabilities come from the compiled forward pass
of ``network_kernels`` (torch's batched arithmetic replayed row by row), so a row scores the same
alone or in a batch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import torch
from sklearn.base import BaseEstimator, ClassifierMixin  # type: ignore[import-untyped]
from sklearn.utils.validation import check_array, check_is_fitted  # type: ignore[import-untyped]
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from trader_runtime.models import network_kernels
from trader_runtime.models.network_kernels import NetworkArrays

FloatArray = npt.NDArray[np.float64]
_PREDICT_BATCH = 65_536
# one intra-op thread: as fast for a network this small, bit-identical whatever the core count,
# and immune to OpenMP spin-waiting when other busy processes share the 2 cores (measured 10x
# slower with 2 threads then)
_TORCH_THREADS = 1
_QUIET_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning")


def build_network(
    n_features: int, hidden_units: int, n_layers: int, dropout: float
) -> nn.Sequential:
    """``n_layers`` x (Linear, ReLU, Dropout) and a final Linear to one logit."""
    layers: list[nn.Module] = []
    width = n_features
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden_units), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden_units
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads inside the block, restoring the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _quiet_and_deterministic(seed: int, *quiet: type[Warning]) -> Iterator[None]:
    """Silence Lightning (loggers and the ``quiet`` warning categories), seed torch without
    touching the caller's RNG state, and restore the deterministic-algorithms flag afterwards."""
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            for category in quiet:
                warnings.simplefilter("ignore", category)
            # Lightning's own deprecation notices about torch internals, not ours to act on
            warnings.filterwarnings("ignore", category=FutureWarning, module="pytorch_lightning")
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@dataclass(frozen=True, slots=True)
class _TrainConfig:
    n_features: int
    hidden_units: int
    n_layers: int
    dropout: float
    learning_rate: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int
    seed: int


@dataclass(frozen=True, slots=True)
class _Trained:
    net: nn.Sequential
    n_epochs: int
    best_epoch: int
    val_losses: list[float]


def _train(x: torch.Tensor, t: torch.Tensor, n_fit: int, config: _TrainConfig) -> _Trained:
    """Fit a fresh network on rows ``[:n_fit]``, validating on rows ``[n_fit:]`` (if any) with
    early stopping; returns the best-epoch network."""
    import pytorch_lightning as pl
    from lightning_fabric.utilities.warnings import PossibleUserWarning
    from pytorch_lightning.callbacks import EarlyStopping

    class LitBinary(pl.LightningModule):
        """Binary cross-entropy on one logit; remembers the best validation epoch's weights."""

        def __init__(self, net: nn.Sequential) -> None:
            super().__init__()
            self.net = net
            self.loss = nn.BCEWithLogitsLoss()
            self.val_losses: list[float] = []
            self.best_loss = float("inf")
            self.best_epoch = -1
            self.best_state: dict[str, torch.Tensor] | None = None
            self._epoch_loss: list[tuple[float, int]] = []

        def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            xb, yb = args[0]
            loss: torch.Tensor = self.loss(self.net(xb).squeeze(1), yb)
            return loss

        def validation_step(self, *args: Any, **kwargs: Any) -> None:
            xb, yb = args[0]
            self._epoch_loss.append((float(self.loss(self.net(xb).squeeze(1), yb)), len(yb)))

        def on_validation_epoch_end(self) -> None:
            total = sum(n for _, n in self._epoch_loss)
            value = sum(v * n for v, n in self._epoch_loss) / max(total, 1)
            self._epoch_loss = []
            self.val_losses.append(value)
            self.log("val_loss", value)
            if value < self.best_loss:
                self.best_loss, self.best_epoch = value, self.current_epoch
                self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(
                self.net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
            )

    validate = n_fit < len(t)
    with (
        _torch_threads(_TORCH_THREADS),
        _quiet_and_deterministic(config.seed, PossibleUserWarning),
    ):
        net = build_network(config.n_features, config.hidden_units, config.n_layers, config.dropout)
        lit = LitBinary(net)
        callbacks: list[pl.Callback] = []
        if validate:
            callbacks.append(
                EarlyStopping(
                    monitor="val_loss",
                    mode="min",
                    patience=config.patience,
                    check_on_train_epoch_end=False,
                )
            )
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=config.max_epochs,
            deterministic=True,
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=1.0 if validate else 0,
        )
        train_loader = _batches(
            x[:n_fit], t[:n_fit], config.batch_size, shuffle=True, seed=config.seed
        )
        val_loader = (
            _batches(x[n_fit:], t[n_fit:], _PREDICT_BATCH, shuffle=False, seed=config.seed)
            if validate
            else None
        )
        trainer.fit(lit, train_dataloaders=train_loader, val_dataloaders=val_loader)
        if lit.best_state is not None:
            net.load_state_dict(lit.best_state)
    net.eval()
    return _Trained(net, int(trainer.current_epoch), int(lit.best_epoch), list(lit.val_losses))


def _batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool, seed: int
) -> DataLoader[Any]:
    """Whole-batch loading (one tensor gather per batch, not one item at a time)."""
    data = TensorDataset(x, y)
    if shuffle:
        sampler: Any = RandomSampler(data, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = range(len(data))
    return DataLoader(
        data, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None
    )


class LightningMLPClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Feed-forward binary classifier (scikit-learn API) trained with PyTorch Lightning on CPU.

    ``n_layers`` hidden layers of ``hidden_units`` ReLU units with ``dropout``; AdamW with
    ``learning_rate`` and ``weight_decay``; at most ``max_epochs`` epochs of shuffled mini-batches
    of ``batch_size``; early stopping after ``patience`` epochs without a lower validation loss
    on the last ``validation_fraction`` of the rows (0 disables validation and early stopping).
    Inputs should be scaled (the zoo puts a StandardScaler in front) and finite.

    Fitted attributes: ``classes_``, ``n_features_in_``, ``module_`` (the best-epoch network),
    ``n_epochs_`` (epochs run), ``best_epoch_`` (0-based, -1 without validation) and
    ``val_losses_`` (one per epoch).
    """

    def __init__(
        self,
        hidden_units: int = 64,
        n_layers: int = 2,
        dropout: float = 0.3,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-3,
        batch_size: int = 2048,
        max_epochs: int = 8,
        patience: int = 2,
        validation_fraction: float = 0.1,
        random_state: int = 0,
    ) -> None:
        self.hidden_units = hidden_units
        self.n_layers = n_layers
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> Self:
        """Train on ``X`` (rows in time order) and binary ``y``."""
        features = check_array(X, dtype=np.float32)
        labels = np.asarray(y).ravel()
        if len(labels) != len(features):
            raise ValueError(f"X has {len(features)} rows but y has {len(labels)}")
        classes = np.unique(labels)
        if len(classes) != 2:
            raise ValueError(f"LightningMLPClassifier needs exactly 2 classes, got {classes}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        encoded = (labels == classes[1]).astype(np.float32)
        n_val = round(len(labels) * self.validation_fraction)
        if n_val >= len(labels):
            n_val = 0
        n_fit = len(labels) - n_val
        config = _TrainConfig(
            n_features=features.shape[1],
            hidden_units=int(self.hidden_units),
            n_layers=int(self.n_layers),
            dropout=float(self.dropout),
            learning_rate=float(self.learning_rate),
            weight_decay=float(self.weight_decay),
            batch_size=int(self.batch_size),
            max_epochs=int(self.max_epochs),
            patience=int(self.patience),
            seed=int(self.random_state),
        )
        trained = _train(torch.from_numpy(features), torch.from_numpy(encoded), n_fit, config)
        self.module_ = trained.net
        self.__dict__.pop("_arrays", None)  # the compiled forward pass's arrays of a refit
        self.classes_ = classes
        self.n_features_in_ = features.shape[1]
        self.n_epochs_ = trained.n_epochs
        self.best_epoch_ = trained.best_epoch
        self.val_losses_ = trained.val_losses
        return self

    def predict_proba(self, X: Any) -> FloatArray:
        """Columns: probability of ``classes_[0]`` and of ``classes_[1]``. The compiled forward
        pass of ``network_kernels`` (not torch's): a row scores the same bits alone or in any
        batch, as the live engine and the backtest need."""
        check_is_fitted(self, "module_")
        features = check_array(X, dtype=np.float32)
        if features.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {features.shape[1]} features, the model was fit on {self.n_features_in_}"
            )
        out = network_kernels.positive(np.ascontiguousarray(features), *self.network_arrays())
        return np.column_stack([1.0 - out, out])

    def network_arrays(self) -> NetworkArrays:
        """The fitted module as the compiled forward pass's arrays (built once)."""
        check_is_fitted(self, "module_")
        arrays: NetworkArrays | None = self.__dict__.get("_arrays")
        if arrays is None:
            arrays = network_kernels.network_arrays(self.module_)
            if arrays is None:
                raise ValueError("module_ is not the network build_network makes")
            self.__dict__["_arrays"] = arrays
        return arrays

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """The class with the higher probability."""
        classes: npt.NDArray[Any] = self.classes_
        return classes[(self.predict_proba(X)[:, 1] > 0.5).astype(np.intp)]
