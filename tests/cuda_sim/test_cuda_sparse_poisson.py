"""The CUDA poisson loss and sparse first-layer kernels against the NumPy reference, under
the simulator (tiny odd shapes: 1, 3, 7, 13), and a model trained on sparse input and with
loss="poisson" on the simulated device against the same model on the CPU."""

import numpy as np
import pytest

from fastmlp.kernels import codes
from fastmlp.kernels import cuda as kc
from fastmlp.kernels import reference as ref
from helpers import DTYPES, assert_close, rng_for

sp = pytest.importorskip("scipy.sparse")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (13, 1)])
@pytest.mark.parametrize("weighted", [False, True])
def test_poisson(dtype, shape, weighted):
    rng = rng_for("poisson", dtype, shape, weighted)
    Z = rng.normal(0, 2, shape).astype(dtype)
    T = rng.poisson(2.0, shape).astype(dtype)
    w = rng.uniform(0, 2, shape[0]).astype(dtype) if weighted else None
    dZ = np.empty(shape, dtype)
    loss = ref.poisson(Z, T, dZ, w)
    dZ_d = kc.to_device(np.full(shape, np.nan, dtype))
    args = (kc.to_device(Z), kc.to_device(T), dZ_d, None if w is None else kc.to_device(w))
    got = kc.poisson(*args)
    scale = float(np.exp(Z.astype(float)).max() + T.max() * np.abs(Z).max())
    assert_close(got, loss, dtype, scale)
    assert_close(kc.to_host(dZ_d), dZ, dtype, float(np.abs(dZ).max()))
    total = kc.zeros(1, np.float64)
    kc.poisson(*args, total=total)
    assert_close(kc.to_host(total)[0], loss * shape[0], dtype, scale * shape[0])


def _csr(rng, B, n_in, dtype):
    X = sp.random(B, n_in, density=0.4, format="csr", random_state=rng, dtype=np.float64)
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,n_in,n_out", [(1, 1, 1), (3, 7, 13), (13, 5, 3)])
@pytest.mark.parametrize("act", [codes.ACTIVATIONS["relu"], codes.ACTIVATIONS["tanh"],
                                 codes.ACTIVATIONS["identity"]])
def test_sparse_linear_forward_and_weight_grad(dtype, B, n_in, n_out, act):
    rng = rng_for("sparse", dtype, B, n_in, n_out, act)
    X = _csr(rng, B, n_in, dtype)
    W = rng.normal(size=(n_out, n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    delta = rng.normal(size=(B, n_out)).astype(dtype)
    csr = [kc.to_device(a) for a in (X.data if X.nnz else np.zeros(1, dtype), X.indices if X.nnz else np.zeros(1, np.int32), X.indptr)]
    out_ref = np.empty((B, n_out), dtype)
    ref.sparse_linear_forward(X.data, X.indices, X.indptr, W, b, act, out_ref)
    out_d = kc.to_device(np.full((B, n_out), np.nan, dtype))
    kc.sparse_linear_forward(*csr, kc.to_device(W), kc.to_device(b), act, out_d)
    scale = float((abs(X) @ np.abs(W.T)).max(initial=0) + np.abs(b).max())
    assert_close(kc.to_host(out_d), out_ref, dtype, scale)
    dW_ref, db_ref = np.empty((n_out, n_in), dtype), np.empty(n_out, dtype)
    ref.sparse_weight_grad(delta, X.data, X.indices, X.indptr, dW_ref, db_ref)
    dW_d = kc.to_device(np.full((n_out, n_in), np.nan, dtype))
    db_d = kc.to_device(np.full(n_out, np.nan, dtype))
    kc.sparse_weight_grad(kc.to_device(delta), *csr, dW_d, db_d)
    assert_close(kc.to_host(dW_d), dW_ref, dtype, float(np.abs(delta).sum() * np.abs(X.data).max(initial=1)))
    assert_close(kc.to_host(db_d), db_ref, dtype, float(np.abs(delta).sum()))


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gather_csr_rows_and_to_dense(index_dtype):
    rng = rng_for("gather", index_dtype)
    X = _csr(rng, 17, 5, np.float64)
    indices, indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    idx = rng.permutation(17)[:7]
    out = [kc.to_device(np.full(X.nnz, np.nan)), kc.to_device(np.full(X.nnz, -1, index_dtype)),
           kc.to_device(np.full(8, -1, index_dtype))]
    kc.gather_csr_rows(kc.to_device(X.data), kc.to_device(indices), kc.to_device(indptr),
                       kc.to_device(idx), *out)
    dense = kc.to_device(np.full((7, 5), np.nan))
    kc.csr_to_dense(*out, dense)
    np.testing.assert_array_equal(kc.to_host(dense), X[idx].toarray())
    assert kc.to_host(out[2])[-1] == X[idx].nnz


def test_model_on_sparse_input_and_poisson_matches_cpu():
    import fastmlp as fm

    rng = rng_for("model")
    X = sp.random(24, 9, density=0.3, format="csr", random_state=1)
    y = rng.integers(0, 3, 24)
    counts = rng.poisson(2.0, 24)
    for loss, target, n_out in (("cross_entropy", y, 3), ("poisson", counts, 1)):
        models = [fm.MLP([9, 5, n_out], loss=loss, optimizer=fm.SGD(lr=0.05), dtype="float64",
                         device=device, seed=0) for device in ("cuda", "cpu")]
        hist = [m.fit(X, target, epochs=2, batch_size=8, shuffle=False, verbose=0) for m in models]
        np.testing.assert_allclose(hist[0].history["loss"], hist[1].history["loss"], rtol=1e-10)
        for a, b in zip(models[0].get_weights(), models[1].get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(models[0].predict(X), models[1].predict(X), rtol=1e-10)
