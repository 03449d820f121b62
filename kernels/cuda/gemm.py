"""The tiled GEMM with fused epilogues: ``matmul``, ``linear_forward``, ``delta_backward``,
``weight_grad``."""

import functools

import numpy as np

from ..codes import IDENTITY
from .device import (GEMM_LARGE, GEMM_SMALL, _dummies, _inlined, _launch, _multiprocessors,
                     activations, cuda)
from .memory import _zero_fill

# ---------------------------------------------------------------------------------------
# the tiled GEMM with fused epilogues

# GEMM epilogues
EPI_NONE, EPI_BIAS_ACT, EPI_DACT, EPI_DB = range(4)


@functools.lru_cache(maxsize=None)
def _tile_loader(dt, rows, BK, NT, k_major):
    """Device function: the tile X[x0:x0+rows, k0:k0+BK] of an operand X (rows, K), staged
    k-major into Xs (BK, rows + 1), zeros past X's edges; X is held in memory as (rows, K),
    or as (K, rows) when `k_major` (transposed). Consecutive threads load consecutive
    addresses of the array in memory either way; NT threads, each loading rows * BK / NT."""
    ZERO = dt(0)
    loads = rows * BK // NT

    def load(X, Xs, tid, x0, k0, n_rows, K):
        for l in range(loads):
            e = tid + l * NT
            if k_major:  # X is (K, rows) in memory: consecutive threads along the rows
                c = e // rows
                r = e - c * rows
            else:  # X is (rows, K): consecutive threads along k
                r = e // BK
                c = e - r * BK
            gr = x0 + r
            gk = k0 + c
            if gr < n_rows and gk < K:
                if k_major:
                    Xs[c, r] = X[gk, gr]
                else:
                    Xs[c, r] = X[gr, gk]
            else:
                Xs[c, r] = ZERO

    return _inlined(load)


@functools.lru_cache(maxsize=None)
def _gemm_kernel(dt, trans_a, trans_b, epi, act, config, accumulate=False):
    """C = op(A) @ op(B) with an epilogue, for one dtype and transpose/epilogue choice;
    accumulate (beta = 1) adds what C (and db) hold first, before the epilogue's f'.

    Block: (BN // TN, BM // TM) threads; grid: (ceil(M / BM),
    ceil(N / BN)). Thread (ty, tx) owns rows ty + i * THR_M and columns tx + j * THR_N of the
    block tile (strided so that stores and shared-memory reads are contiguous across tx).
    Tiles of op(A) and op(B) are staged k-major in shared memory (padded by one element
    against bank conflicts), loaded with consecutive threads on consecutive addresses of
    the array in memory whatever the transpose flags.
    """
    BM, BN, BK, TM, TN = config
    THR_M, THR_N = BM // TM, BN // TN
    NT = THR_M * THR_N
    A_LOADS, B_LOADS = BM * BK // NT, BN * BK // NT
    BMP, BNP = BM + 1, BN + 1
    assert A_LOADS * NT == BM * BK and B_LOADS * NT == BN * BK and TM <= THR_N
    f, df = activations(dt).f_of[act], activations(dt).df_of[act]
    ZERO = dt(0)
    # op(B) is (K, N): its tiles are op(A)'s with rows n, stored k-major unless trans_b
    load_a = _tile_loader(dt, BM, BK, NT, k_major=trans_a)
    load_b = _tile_loader(dt, BN, BK, NT, k_major=not trans_b)

    def gemm(A, B, C, bias, D, db):
        As = cuda.shared.array((BK, BMP), dt)
        Bs = cuda.shared.array((BK, BNP), dt)
        acc = cuda.local.array((TM, TN), dt)
        areg = cuda.local.array(TM, dt)
        breg = cuda.local.array(TN, dt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * THR_N + tx
        M = C.shape[0]
        N = C.shape[1]
        if trans_a:
            K = A.shape[0]
        else:
            K = A.shape[1]
        m0 = cuda.blockIdx.x * BM  # row tiles on grid.x: up to 2^31 - 1 of them
        n0 = cuda.blockIdx.y * BN
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = 0
        do_db = epi == EPI_DB and cuda.blockIdx.y == 0 and tx < TM
        db_row = ty + tx * THR_M
        colsum = ZERO
        for k0 in range(0, K, BK):
            load_a(A, As, tid, m0, k0, M, K)
            load_b(B, Bs, tid, n0, k0, N, K)
            cuda.syncthreads()
            for kk in range(BK):
                for i in range(TM):
                    areg[i] = As[kk, ty + i * THR_M]
                for j in range(TN):
                    breg[j] = Bs[kk, tx + j * THR_N]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += areg[i] * breg[j]
            if do_db:  # db = column sums of op(A)'s rows: the delta tile already staged
                for kk in range(BK):
                    colsum += As[kk, db_row]
            cuda.syncthreads()
        for i in range(TM):
            row = m0 + ty + i * THR_M
            if row < M:
                for j in range(TN):
                    col = n0 + tx + j * THR_N
                    if col < N:
                        if epi == EPI_BIAS_ACT:
                            C[row, col] = f(acc[i, j] + bias[col])
                        elif epi == EPI_DACT:
                            if accumulate:
                                C[row, col] = (C[row, col] + acc[i, j]) * df(D[row, col])
                            else:
                                C[row, col] = acc[i, j] * df(D[row, col])
                        elif accumulate:
                            C[row, col] += acc[i, j]
                        else:
                            C[row, col] = acc[i, j]
        if do_db:
            row = m0 + db_row
            if row < M:
                if accumulate:
                    db[row] += colsum
                else:
                    db[row] = colsum

    return cuda.jit(gemm)


def _gemm_config(M, N):
    BM, BN = GEMM_LARGE[:2]
    if ((M + BM - 1) // BM) * ((N + BN - 1) // BN) >= _multiprocessors():
        return GEMM_LARGE
    return GEMM_SMALL


#: CUDA's limit on grid.y and grid.z (grid.x goes to 2^31 - 1)
MAX_GRID_Y = 65535


def _gemm_grid(M, N, config):
    """(row tiles, column tiles): the rows on grid.x, so a batch of millions of rows
    launches (grid.y, the columns, would allow 65,535 tiles: 4 million outputs)."""
    BM, BN = config[:2]
    grid = ((M + BM - 1) // BM, (N + BN - 1) // BN)
    if grid[1] > MAX_GRID_Y:
        raise ValueError(f"a product with {N} output columns needs {grid[1]} column tiles, "
                         f"more than CUDA's grid.y limit of {MAX_GRID_Y}")
    return grid


#: (dtype, C's shape, transposes, epilogue, activation) -> (kernel, grid, block), or None
#: for an empty product: worked out once per shape (host time per launch is what a small
#: network's step is made of)
_PLANS = {}


def _gemm_plan(dt, M, N, trans_a, trans_b, epi, act, accumulate=False):
    config = _gemm_config(M, N)
    BM, BN, _, TM, TN = config
    grid = _gemm_grid(M, N, config)
    if grid[0] == 0 or grid[1] == 0:
        return None
    # the activation is a compile-time constant of the kernel: one specialisation per
    # activation in use, with only that activation's code in the epilogue
    kernel = _gemm_kernel(dt, bool(trans_a), bool(trans_b), epi,
                          int(act) if epi in (EPI_BIAS_ACT, EPI_DACT) else IDENTITY, config,
                          bool(accumulate))
    return kernel, grid, (BN // TN, BM // TM)


def _gemm(A, B, C, trans_a, trans_b, epi, bias=None, D=None, act=IDENTITY, db=None,
          accumulate=False):
    dt = C.dtype.type
    key = (dt, C.shape, trans_a, trans_b, epi, act, accumulate)
    plan = _PLANS.get(key, False)
    if plan is False:
        M, N = C.shape
        plan = _gemm_plan(dt, M, N, trans_a, trans_b, epi, act, accumulate)
        if len(_PLANS) > 4096:
            _PLANS.clear()
        _PLANS[key] = plan
    if plan is None:
        if epi == EPI_DB and db is not None and not accumulate:
            _zero_fill(db)
        return
    if bias is None or D is None or db is None:
        d1, d2 = _dummies(dt)
        bias = d1 if bias is None else bias
        D = d2 if D is None else D
        db = d1 if db is None else db
    kernel, grid, block = plan
    _launch(kernel, grid, block, A, B, C, bias, D, db)


def matmul(A, B, C, trans_a=False, trans_b=False):
    """C = op(A) @ op(B), op transposing when its flag is set (one tiled-GEMM launch)."""
    _gemm(A, B, C, trans_a, trans_b, EPI_NONE)


def linear_forward(A_in, W, b, act, A_out):
    """A_out = f(A_in @ W.T + b) in one launch: tiled GEMM, bias + activation epilogue."""
    _gemm(A_in, W, A_out, False, True, EPI_BIAS_ACT, bias=b, act=act)


def delta_backward(delta, W, A_prev, act, delta_prev, accumulate=False):
    """delta_prev = f'(A_prev) * (delta @ W) in one launch (f' fused into the epilogue);
    accumulate=True: f'(A_prev) * (delta_prev + delta @ W) (beta = 1, same launch)."""
    _gemm(delta, W, delta_prev, False, False, EPI_DACT, D=A_prev, act=act, accumulate=accumulate)


def weight_grad(delta, A_prev, dW, db, accumulate=False):
    """dW = delta.T @ A_prev and db = sum of delta over the batch, in one launch: the
    blocks of the first column block sum the delta tiles they stage for the GEMM.
    accumulate=True adds both to what dW and db hold (a shared layer's later use)."""
    _gemm(delta, A_prev, dW, True, False, EPI_DB, db=db, accumulate=accumulate)
