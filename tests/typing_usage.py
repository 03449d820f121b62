"""Ordinary user code, for a type checker (tests/test_typing.py runs mypy over it): every
call here must type-check against fastmlp's annotations. Not a test module: it is never
run, only checked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import fastmlp as fm
from fastmlp import datasets, metrics
from fastmlp.sklearn import MLPClassifier


def train_and_save(folder: str) -> float:
    X_train, y_train, X_test, y_test = datasets.load_digits(test_size=0.2)
    model = fm.MLP([64, 32, 10], activation="relu", loss="cross_entropy",
                   optimizer=fm.Adam(lr=1e-3), seed=0)
    history: fm.History = model.fit(X_train, y_train, epochs=2, batch_size=64,
                                    validation_split=0.1, verbose=0,
                                    callbacks=[fm.EarlyStopping(patience=2),
                                               fm.StepDecay(step_size=1)])
    losses: list[float] = history.history["loss"]
    result = model.evaluate(X_test, y_test)
    accuracy: float = result["accuracy"]
    labels: np.ndarray = model.predict(X_test)
    proba: np.ndarray = model.predict_proba(X_test, batch_size=256)
    C: np.ndarray = metrics.confusion_matrix(y_test, labels)
    model.compile(optimizer="sgd").freeze("dense").unfreeze()
    weights: list[np.ndarray] = model.get_weights()
    model.set_weights(weights)
    path = os.path.join(folder, "model.npz")
    model.save(path)
    again = fm.load(Path(path))
    step_loss: float = model.train_step(X_train[:32], y_train[:32])
    print(model.summary(), again, losses, proba.shape, C.sum(), step_loss)
    return accuracy


def functional(X: np.ndarray, y: np.ndarray) -> fm.Model:
    x = fm.Input(X.shape[1], name="pixels")
    h = fm.Dense(32, activation="relu")(x)
    h = fm.Add()([h, fm.Dense(32, activation="relu")(h)])
    model = fm.Model(x, fm.Dense(10)(h), loss="cross_entropy", optimizer="adam",
                     device="cpu", dtype="float64")
    model.fit({"pixels": X}, y, epochs=1, on_divergence="warn", shuffle=False)
    loss, acc = model.evaluate([X], y, return_dict=False)
    hidden: np.ndarray = model.predict(X, output=model.layers[0].name)
    n: int = model.n_parameters
    print(loss, acc, hidden.shape, n, model.get_layer(index=0).trainable)
    return model


def estimator(X: np.ndarray, y: np.ndarray) -> float:
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5)
    fitted: MLPClassifier = clf.fit(X, y)
    labels: np.ndarray = fitted.predict(X)
    proba: np.ndarray = fitted.predict_proba(X)
    print(labels.shape, proba.shape)
    return float(fitted.score(X, y))
