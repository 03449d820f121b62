"""A model given no loss takes it from its first targets, by one rule for MLP, Sequential
and Model, says which and why, and refuses targets that say too little instead of guessing."""

import numpy as np
import pytest

import fastmlp as fm

rng = np.random.default_rng(0)
X = rng.random((40, 4), dtype=np.float32)


def build(kind, outputs, activation="identity"):
    """The same network as an MLP, a Sequential and a functional Model, no loss given."""
    if kind == "mlp":
        return fm.MLP([4, 6, outputs], output=activation, seed=0)
    if kind == "sequential":
        return fm.Sequential([fm.Dense(4, 6, "relu"), fm.Dense(6, outputs, activation)], seed=0)
    x = fm.Input(4)
    return fm.Model(x, fm.Dense(outputs, activation=activation)(fm.Dense(6, activation="relu")(x)),
                    seed=0)


KINDS = ["mlp", "sequential", "model"]
CASES = [  # (outputs, targets, the loss they choose, the reason's words)
    (3, np.arange(40) % 3, "cross_entropy", "class labels"),
    (3, (np.arange(40) % 3).astype(np.float32), "cross_entropy", "class labels"),  # a label column
    (3, np.eye(3)[np.arange(40) % 3], "cross_entropy", "one-hot rows"),
    (1, (X[:, 0] > 0.5).astype(int), "binary_cross_entropy", "0/1 labels"),
    (1, (X[:, 0] > 0.5), "binary_cross_entropy", "0/1 labels"),
    (1, 3 * X[:, 0], "mse", "real-valued"),
    (2, X[:, :2] * 2 - 1, "mse", "real-valued"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("outputs, y, loss, why", CASES)
def test_the_first_targets_choose_the_loss_by_one_rule(kind, outputs, y, loss, why, capsys):
    model = build(kind, outputs)
    assert "loss chosen from the targets at the first fit" in model.summary()
    assert model.get_config()["loss"] is None
    model.fit(X, y, epochs=1, batch_size=8, verbose=2)
    assert model.loss == loss and why in model.loss_reason
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"loss={loss!r}, chosen from y: {model.loss_reason.split(': ', 1)[1]}"
    assert len(first) < 80
    assert f"loss={loss!r} (chosen from y: " in model.summary()
    model.fit(X, y, epochs=1, batch_size=8, verbose=2)  # said once
    assert not capsys.readouterr().out.startswith("loss=")
    assert model.get_config()["loss"] == loss


AMBIGUOUS = [  # targets that say too little, and the losses the error must offer
    (1, (X[:, 0] > 0.5).astype(np.float64), ["binary_cross_entropy", "mse"]),
    (3, (np.eye(3)[np.arange(40) % 3] + np.eye(3)[(np.arange(40) + 1) % 3]),
     ["binary_cross_entropy", "mse"]),
    (1, np.arange(40) % 5, ["mse", "poisson", "cross_entropy"]),
    (3, np.random.default_rng(1).dirichlet(np.ones(3), size=40),
     ["cross_entropy", "kl_divergence", "mse"]),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("outputs, y, offered", AMBIGUOUS)
def test_targets_that_say_too_little_are_refused_naming_the_losses_that_fit(kind, outputs, y,
                                                                            offered):
    model = build(kind, outputs)
    with pytest.raises(ValueError, match="was given no loss") as err:
        model.fit(X, y, epochs=1, verbose=0)
    for loss in offered:
        assert f"loss='{loss}'" in str(err.value)
    assert model._loss_pending  # nothing was decided
    model.compile(loss=offered[0])
    assert model.loss == offered[0] and not model._loss_pending and model.loss_reason == "given"


@pytest.mark.parametrize("kind", KINDS)
def test_a_softmax_or_sigmoid_output_names_its_loss(kind):
    soft = build(kind, 3, "softmax")
    assert soft.loss == "cross_entropy" and not soft._loss_pending
    assert "activation is 'softmax'" in soft.summary()
    sig = build(kind, 1, "sigmoid")
    assert sig.loss == "binary_cross_entropy" and not sig._loss_pending


def test_a_wrong_loss_error_names_the_loss_the_targets_fit():
    with pytest.raises(ValueError, match="pass loss='mse'"):
        fm.MLP([4, 6, 1], loss="binary_cross_entropy").fit(X, 3 * X[:, 0], verbose=0)
    with pytest.raises(ValueError, match="pass loss='mse'"):
        fm.MLP([4, 6, 3], loss="cross_entropy").fit(X, 3 * X[:, 0], verbose=0)
    with pytest.raises(ValueError, match="pass loss='cross_entropy'"):
        fm.MLP([4, 6, 3], loss="mse").fit(X, np.arange(40) % 3, verbose=0)
    with pytest.raises(ValueError) as err:  # no suggestion where the targets fit nothing
        fm.MLP([4, 6, 3], loss="cross_entropy").fit(X, np.arange(40) % 5, verbose=0)
    assert "pass loss=" not in str(err.value)


def test_a_model_saved_before_its_first_fit_chooses_after_loading(tmp_path):
    model = fm.MLP([4, 6, 1], seed=0)
    model.save(tmp_path / "m.npz")
    back = fm.load(tmp_path / "m.npz")
    assert back._loss_pending
    back.fit(X, 3 * X[:, 0], epochs=1, verbose=0)
    assert back.loss == "mse"
    back.save(tmp_path / "m.npz")
    assert fm.load(tmp_path / "m.npz").loss == "mse" and not fm.load(tmp_path / "m.npz")._loss_pending


def test_evaluate_and_train_step_choose_it_too():
    model = fm.MLP([4, 6, 3], seed=0)
    model.evaluate(X, np.arange(40) % 3)
    assert model.loss == "cross_entropy"
    model = fm.MLP([4, 6, 1], seed=0)
    model.train_step(X[:8], 2 * X[:8, 0])
    assert model.loss == "mse"
