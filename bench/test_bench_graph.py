"""A residual MLP (issue 15): one epoch of MNIST-shaped data, fastmlp's graph Model vs
PyTorch eager, in the same run, with fastmlp's plain Sequential MLP of the epoch group
(784-256-128-10) alongside, so that a slowdown of the chain's fused path shows up here too.

Network: 784 -> Dense(256, relu) -> four residual blocks h = h + relu(W h + b) of width 256
-> Dense(10); softmax cross-entropy, plain SGD (lr 0.01), float32. Groups ``residual
batch=B``. Rounds are interleaved as in test_bench_epoch.py (round r runs every contender
once, in an order rotating with r).
"""

import pytest

from benchlib import LR, FastmlpMLP, TorchMLP, make_data, schedule

WIDTH, BLOCKS = 256, 4


def residual_flop(n_samples):
    params = 784 * WIDTH + WIDTH + BLOCKS * (WIDTH * WIDTH + WIDTH) + WIDTH * 10 + 10
    return 6 * params * n_samples


class FastmlpResidual:
    name = "fastmlp-residual"

    def __init__(self, batch):
        import fastmlp as fm

        x = fm.Input(784)
        h = fm.Dense(WIDTH, activation="relu")(x)
        for _ in range(BLOCKS):
            h = fm.Add()([h, fm.Dense(WIDTH, activation="relu")(h)])
        self.model = fm.Model(x, fm.Dense(10)(h), optimizer=fm.SGD(lr=LR), device="cpu", seed=0)
        X, y = make_data(4 * batch, seed=1)
        self.model.fit(X, y, epochs=1, batch_size=batch, verbose=0)

    def epoch(self, X, y, batch):
        self.model.fit(X, y, epochs=1, batch_size=batch, verbose=0)


class TorchResidual(TorchMLP):  # TorchMLP's epoch, on the residual network
    name = "torch-residual"

    def __init__(self, batch):
        import torch

        self.torch = torch
        torch.manual_seed(0)

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.first = torch.nn.Linear(784, WIDTH)
                self.blocks = torch.nn.ModuleList(torch.nn.Linear(WIDTH, WIDTH) for _ in range(BLOCKS))
                self.out = torch.nn.Linear(WIDTH, 10)

            def forward(self, x):
                h = torch.relu(self.first(x))
                for block in self.blocks:
                    h = h + torch.relu(block(h))
                return self.out(h)

        self.net = Net()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        X, y = make_data(4 * batch, seed=1)
        self.epoch(X, y, batch)



CONTENDERS = {"fastmlp-residual": FastmlpResidual, "torch-residual": TorchResidual,
              "fastmlp-sequential": FastmlpMLP}
NAMES = list(CONTENDERS)




_models = {}


@pytest.mark.parametrize("batch, round_, contender", schedule(NAMES))
def test_residual_epoch(benchmark, request, data, batch, round_, contender):
    if contender == "torch-residual":
        request.getfixturevalue("torch")  # skips cleanly without PyTorch
    X, y = data
    key = (batch, contender)
    if key not in _models:
        for old in [k for k in _models if k[0] != batch]:
            del _models[old]
        _models[key] = CONTENDERS[contender](batch)
    benchmark.group = f"residual batch={batch}"
    benchmark.extra_info.update(kind="residual epoch", contender=contender, batch=batch,
                                round=round_, samples=len(X), flop=residual_flop(len(X)))
    benchmark.pedantic(_models[key].epoch, args=(X, y, batch), rounds=1, warmup_rounds=0)
