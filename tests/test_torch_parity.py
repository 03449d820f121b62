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


# ---------------------------------------------------------------------------------------
# graph models (issue 15): a residual MLP and a two-input model, step for step

GRAPH_OPTIMIZERS = [
    (lambda: fastmlp.SGD(lr=0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    (lambda: fastmlp.Adam(lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
]


def _linear(layer):
    W, b = layer.get_weights()
    mod = torch.nn.Linear(W.shape[1], W.shape[0]).double()
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(W))
        mod.bias.copy_(torch.from_numpy(b))
    return mod


def _residual_pair(make_opt):
    x = fastmlp.Input(6)
    d0, d1, d2, out = (fastmlp.Dense(8, activation="relu"), fastmlp.Dense(8, activation="tanh"),
                       fastmlp.Dense(8, activation="relu"), fastmlp.Dense(3))
    h = d0(x)
    h = fastmlp.Add()([h, d1(h)])
    h = fastmlp.Add()([h, d2(h)])
    model = fastmlp.Model(x, out(h), dtype="float64", seed=0, optimizer=make_opt())
    t0, t1, t2, t_out = (_linear(layer) for layer in (d0, d1, d2, out))

    def forward(X):
        h = torch.relu(t0(X[0]))
        h = h + torch.tanh(t1(h))
        h = h + torch.relu(t2(h))
        return t_out(h)

    return model, forward, [t0, t1, t2, t_out]


def _two_input_pair(make_opt):
    xa, xb = fastmlp.Input(6, name="a"), fastmlp.Input(5, name="b")
    da, db, mix, out = (fastmlp.Dense(4, activation="tanh"), fastmlp.Dense(3, activation="elu"),
                        fastmlp.Dense(4, activation="sigmoid"), fastmlp.Dense(3))
    ha = da(xa)
    z = fastmlp.Concatenate()([ha, db(xb), xb])
    model = fastmlp.Model([xa, xb], out(fastmlp.Add()([mix(z), ha])), dtype="float64", seed=0,
                          optimizer=make_opt())
    ta, tb, tmix, t_out = (_linear(layer) for layer in (da, db, mix, out))

    def forward(X):
        ha = torch.tanh(ta(X[0]))
        z = torch.cat([ha, torch.nn.functional.elu(tb(X[1])), X[1]], dim=1)
        return t_out(torch.sigmoid(tmix(z)) + ha)

    return model, forward, [ta, tb, tmix, t_out]


@pytest.mark.parametrize("make_opt", GRAPH_OPTIMIZERS, ids=["sgd-momentum", "adam"])
@pytest.mark.parametrize("make_pair", [_residual_pair, _two_input_pair], ids=["residual", "two-input"])
def test_graph_models_same_losses_as_pytorch(make_pair, make_opt):
    fm_opt, torch_opt = make_opt
    model, forward, modules = make_pair(fm_opt)
    opt = torch_opt([p for m in modules for p in m.parameters()])
    rng = np.random.default_rng(0)
    Xa, Xb, y = rng.normal(size=(64, 6)), rng.normal(size=(64, 5)), rng.integers(0, 3, 64)
    two = len(model.inputs) == 2
    for step in range(8):
        sl = slice(step % 4 * 16, step % 4 * 16 + 16)
        ours = model.train_step([Xa[sl], Xb[sl]] if two else Xa[sl], y[sl])
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward([torch.from_numpy(Xa[sl]), torch.from_numpy(Xb[sl])]),
                                                 torch.from_numpy(y[sl]))
        loss.backward()
        opt.step()
        assert ours == pytest.approx(loss.item(), rel=1e-9)
    theirs = [p.detach().numpy() for m in modules for p in (m.weight, m.bias)]
    for layer_weights, expected in zip([w for l in model.layers if l.param_shapes() for w in l.get_weights()],
                                       theirs):
        np.testing.assert_allclose(layer_weights, expected, rtol=1e-9, atol=1e-12)
