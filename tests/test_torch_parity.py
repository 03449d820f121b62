"""fastmlp and PyTorch, started from the same weights and fed the same batches, follow the
same loss curve. PyTorch is optional (the `bench` extra): skipped where it is not installed."""

import numpy as np
import pytest

import fastmlp

torch = pytest.importorskip("torch")

TORCH_ACT = {"relu": torch.nn.ReLU, "leaky_relu": torch.nn.LeakyReLU, "elu": torch.nn.ELU,
             "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "identity": torch.nn.Identity,
             "gelu": torch.nn.GELU, "softplus": torch.nn.Softplus}

OPTIMIZERS = [
    (lambda: fastmlp.SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (lambda: fastmlp.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3)),
    (lambda: fastmlp.SGD(lr=0.05, momentum=0.9, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    (lambda: fastmlp.Adam(lr=0.01, decoupled=False, weight_decay=1e-2),
     lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2)),
    (lambda: fastmlp.AdamW(lr=0.01, weight_decay=0.1),
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    (lambda: fastmlp.Adam(lr=0.01, amsgrad=True), lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0, amsgrad=True)),
    (lambda: fastmlp.RMSprop(lr=0.01, weight_decay=1e-3),
     lambda p: torch.optim.RMSprop(p, lr=0.01, weight_decay=1e-3)),
    (lambda: fastmlp.RMSprop(lr=0.01, momentum=0.5, centered=True),
     lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True)),
    (lambda: fastmlp.Adagrad(lr=0.05), lambda p: torch.optim.Adagrad(p, lr=0.05)),
    (lambda: fastmlp.Adagrad(lr=0.05, lr_decay=0.01, weight_decay=1e-3, initial_accumulator_value=0.1),
     lambda p: torch.optim.Adagrad(p, lr=0.05, lr_decay=0.01, weight_decay=1e-3,
                                   initial_accumulator_value=0.1)),
]
OPT_IDS = ["sgd", "momentum-wd", "nesterov", "adam-l2", "adamw", "amsgrad", "rmsprop", "rmsprop-centered",
           "adagrad", "adagrad-decay"]


def _torch_twin(model):
    layers, weights = [], iter(model.get_weights())
    for layer in model.layers:
        if isinstance(layer, fastmlp.Dense):
            mod = torch.nn.Linear(layer.in_features, layer.out_features).double()
            params = [mod.weight, mod.bias]
        else:
            mod = torch.nn.BatchNorm1d(layer.features, eps=layer.eps, momentum=layer.momentum).double()
            params = [mod.weight, mod.bias, mod.running_mean, mod.running_var]
        with torch.no_grad():
            for p in params:
                p.copy_(torch.from_numpy(next(weights).astype(np.float64)))
        layers += [mod, TORCH_ACT[layer.activation]()]
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=OPT_IDS)
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "mse"])
def test_same_loss_curve_as_pytorch(loss, make_opt):
    rng = np.random.default_rng(0)
    n_out = {"cross_entropy": 4, "binary_cross_entropy": 1, "mse": 2}[loss]
    X = rng.normal(size=(96, 6))
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, 96)
        yt, lossf = torch.from_numpy(y), torch.nn.CrossEntropyLoss()
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, (96, 1)).astype(np.float64)
        yt, lossf = torch.from_numpy(y), torch.nn.BCEWithLogitsLoss()
    else:
        y = rng.normal(size=(96, n_out))
        yt, lossf = torch.from_numpy(y), torch.nn.MSELoss()
    model = fastmlp.MLP([6, 16, 8, n_out], activation=["tanh", "relu"], loss=loss,
                        optimizer=make_opt[0](), dtype="float64", seed=0)
    net = _torch_twin(model)
    opt = make_opt[1](net.parameters())
    Xt = torch.from_numpy(X)
    ours, theirs = [], []
    for step in range(30):
        sl = slice(step % 6 * 16, step % 6 * 16 + 16)
        ours.append(model.train_step(X[sl], y[sl]))
        opt.zero_grad()
        out = lossf(net(Xt[sl]), yt[sl])
        out.backward()
        opt.step()
        theirs.append(out.item())
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    assert np.mean(ours[-6:]) < np.mean(ours[:6])  # the same six batches, later: it learnt
    for W, lin in zip(model.W, [m for m in net if isinstance(m, torch.nn.Linear)]):
        np.testing.assert_allclose(W, lin.weight.detach().numpy(), rtol=1e-8, atol=1e-10)


def test_batchnorm_gelu_softplus_label_smoothing_and_class_weights_like_pytorch():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(64, 6)), rng.integers(0, 3, 64)
    layers = [fastmlp.Dense(6, 12), fastmlp.BatchNorm(12, activation="gelu"),
              fastmlp.Dense(12, 8, "softplus"), fastmlp.Dense(8, 3)]
    model = fastmlp.Sequential(layers, optimizer=fastmlp.SGD(lr=0.1, momentum=0.9), dtype="float64",
                               seed=0, label_smoothing=0.1)
    net = _torch_twin(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    class_weight = np.array([1.0, 2.0, 0.5])
    ours, theirs = [], []
    for step in range(12):
        sl = slice(step % 4 * 16, step % 4 * 16 + 16)
        w = class_weight[y[sl]]
        ours.append(model.train_step(X[sl], y[sl], sample_weight=w))
        opt.zero_grad()
        per_sample = torch.nn.functional.cross_entropy(net(torch.from_numpy(X[sl])), torch.from_numpy(y[sl]),
                                                       label_smoothing=0.1, reduction="none")
        loss = (per_sample * torch.from_numpy(w)).mean()  # Keras' weighting: sum(w l) / B
        loss.backward()
        opt.step()
        theirs.append(loss.item())
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    bn = net[2]
    np.testing.assert_allclose(model.get_weights()[4], bn.running_mean.numpy(), rtol=1e-9)
    np.testing.assert_allclose(model.get_weights()[5], bn.running_var.numpy(), rtol=1e-9)
    net.eval()
    np.testing.assert_allclose(model.predict_proba(X), torch.softmax(net(torch.from_numpy(X)), 1).detach().numpy(),
                               rtol=1e-8)
