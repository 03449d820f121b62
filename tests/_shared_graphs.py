"""The graph models and data that the graph tests share (test_graph, test_gradcheck,
test_save_load): each builder returns (inputs, output); ``data_for`` gives its input data."""

import numpy as np

import fastmlp as fm

RNG = np.random.default_rng(0)
XA = RNG.normal(size=(30, 6))
XB = RNG.normal(size=(30, 5))
Y3 = np.arange(30) % 3


def residual():
    x = fm.Input(6)
    h = fm.Dense(8, activation="relu")(x)
    h = fm.Add()([h, fm.Dense(8, activation="tanh")(h)])
    return x, fm.Dense(3)(h)


def concat_two_inputs():
    xa, xb = fm.Input(6, name="a"), fm.Input(5, name="b")
    z = fm.Concatenate()([fm.Dense(4, activation="tanh")(xa), fm.Dense(3, activation="gelu")(xb)])
    return [xa, xb], fm.Dense(3)(z)


def shared_siamese():
    xa, xb = fm.Input(6, name="left"), fm.Input(6, name="right")
    encoder = fm.Dense(5, activation="tanh")
    return [xa, xb], fm.Dense(3)(fm.Concatenate()([encoder(xa), encoder(xb)]))


def fan_out():
    x = fm.Input(6)
    h = fm.Dense(7, activation="elu")(x)
    a, b = fm.Dense(4, activation="tanh")(h), fm.Dense(4, activation="sigmoid")(h)
    return x, fm.Dense(3)(fm.Concatenate()([h, a, b, x]))


def dropout_batchnorm():
    x = fm.Input(6)
    bn = fm.BatchNorm(activation="relu")(fm.Dense(7)(x))
    d = fm.Dropout(0.3)(bn)
    return x, fm.Dense(3)(fm.Add()([d, fm.Dense(7, activation="tanh")(d), bn]))


def activations_and_shared_batchnorm():
    x = fm.Input(6)
    h = fm.Dense(6)(x)
    shared_bn = fm.BatchNorm(activation="tanh")
    z = fm.Add()([shared_bn(h), shared_bn(fm.Dense(6)(h)), fm.Activation("gelu")(h)])
    return x, fm.Dense(3)(fm.Concatenate()([z, fm.Activation("softplus")(z)]))


GRAPHS = [residual, concat_two_inputs, shared_siamese, fan_out, dropout_batchnorm,
          activations_and_shared_batchnorm]
GRAPH_IDS = ["residual", "concat-two-inputs", "shared", "fan-out", "dropout-batchnorm",
             "activation-shared-bn"]


def data_for(inputs):
    return XA if not isinstance(inputs, list) else [XA, XB if inputs[1].width == 5 else XA]
