"""Graph models (fastmlp.Model) to PyTorch: model.to_torch() gives a GraphModule with the
same outputs and the same training step."""

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastmlp as fm  # noqa: E402


def _data(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) * 2


def _perturbed(model, seed=1):
    rng = np.random.default_rng(seed)
    names = [name for layer in model.layers
             for name in list(layer.param_shapes()) + list(layer.state_shapes())]
    model.set_weights([rng.uniform(0.5, 2.0, size=w.shape) if name == "running_var"
                       else rng.normal(scale=0.5, size=w.shape)
                       for w, name in zip(model.get_weights(), names)])
    return model


def residual(optimizer=None, batch_norm=True):
    x = fm.Input(5, name="x")
    h = fm.Dense(8, activation="relu")(x)
    if batch_norm:
        h = fm.BatchNorm(activation="tanh", momentum=0.2)(h)
    h = fm.Add()([h, fm.Dense(8, activation="gelu")(h)])
    h = fm.Add()([h, fm.Dense(8, activation="elu")(h), fm.Activation("sigmoid")(h)])
    return fm.Model(x, fm.Dense(3)(h), loss="cross_entropy", dtype="float64", seed=0, optimizer=optimizer)


def two_inputs(optimizer=None):
    a, b = fm.Input(4, name="a"), fm.Input(3, name="b")
    h = fm.Concatenate()([fm.Dense(6, activation="leaky_relu")(a), fm.Dense(4, activation="softplus")(b), b])
    h = fm.Dropout(0.4)(h)
    return fm.Model([a, b], fm.Dense(2)(h), loss="mse", dtype="float64", seed=0, optimizer=optimizer)


def siamese(optimizer=None):
    a, b = fm.Input(5, name="left"), fm.Input(5, name="right")
    shared = fm.Dense(7, activation="tanh")
    out = fm.Dense(1, activation="sigmoid")(fm.Add()([shared(a), shared(b)]))
    return fm.Model([a, b], out, loss="binary_cross_entropy", dtype="float64", seed=0,
                    optimizer=optimizer)


MODELS = {"residual": residual, "two_inputs": two_inputs, "siamese": siamese}
HEADS = {"cross_entropy": lambda z: torch.softmax(z, 1), "binary_cross_entropy": torch.sigmoid,
         "mse": lambda z: z}


def _inputs(model, n, seed=0):
    return [_data(n, w, seed + i) for i, w in enumerate(model._input_widths)]


@pytest.mark.parametrize("kind", MODELS)
def test_to_torch_computes_the_same_outputs(kind):
    model = _perturbed(MODELS[kind]())
    module = model.to_torch().eval()
    assert isinstance(module, torch.nn.Module) and module.input_names == list(model._input_names)
    for n in (1, 7, 200):
        Xs = _inputs(model, n, seed=n)
        with torch.no_grad():
            out = HEADS[model.loss](module(*map(torch.from_numpy, Xs))).numpy()
        X = Xs[0] if len(Xs) == 1 else Xs
        expected = model.predict_proba(X) if model.loss != "mse" else model.predict(X)
        np.testing.assert_allclose(out, expected.reshape(out.shape), atol=1e-6, rtol=1e-6)


def test_a_shared_layer_is_one_module():
    model = siamese()
    module = model.to_torch()
    n_torch = sum(p.numel() for p in module.parameters())
    assert n_torch == model.n_parameters == 5 * 7 + 7 + 7 + 1
    assert len(module.layers) == 2


def test_the_module_pickles_and_checks_its_inputs():
    module = two_inputs().to_torch()
    again = pickle.loads(pickle.dumps(module)).eval()
    a, b = torch.from_numpy(_data(3, 4)), torch.from_numpy(_data(3, 3))
    torch.testing.assert_close(again(a, b), module.eval()(a, b))
    with pytest.raises(TypeError, match="takes 2 inputs"):
        module(a)


@pytest.mark.parametrize("kind", ["residual", "siamese"])
def test_to_torch_trains_the_same(kind):
    """One SGD-momentum step at a time on both sides gives the same losses (batch
    statistics in BatchNorm, a shared layer's gradient summed over its uses)."""
    model = _perturbed(MODELS[kind](fm.SGD(lr=0.1, momentum=0.9)))
    module = model.to_torch().train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    Xs = _inputs(model, 16, seed=3)
    y = np.arange(16) % 3 if model.loss == "cross_entropy" else (np.arange(16) % 2).astype(np.float64)
    losses_fm, losses_torch = [], []
    for _ in range(3):
        losses_fm.append(model.train_step(Xs[0] if len(Xs) == 1 else Xs, y))
        optimizer.zero_grad()
        z = module(*map(torch.from_numpy, Xs))
        if model.loss == "cross_entropy":
            loss = torch.nn.functional.cross_entropy(z, torch.from_numpy(y))
        else:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        losses_torch.append(loss.item())
    np.testing.assert_allclose(losses_fm, losses_torch, rtol=1e-10)
    assert losses_fm[2] < losses_fm[0]


def test_from_torch_stays_sequential():
    with pytest.raises(ValueError, match="Sequential models only"):
        fm.from_torch(residual().to_torch())
