"""The MLP as a student writes it in NumPy: forward, softmax cross-entropy, backward, plain
SGD. It is the peer that ``fastmlp bench`` (cli.py) and the benchmarks (bench/benchlib.py)
measure fastmlp against; this is its only copy. Not used for training by fastmlp itself.
"""

import numpy as np


def sgd_epoch(W, b, X, y, batch, lr, order=None):
    """One epoch of plain SGD on an MLP with ReLU hidden layers and a softmax cross-entropy
    output, updating the lists of weights W[l] (out, in) and biases b[l] in place. Batches
    of `batch` rows are taken in `order` (an index array; default: the rows as stored)."""
    L = len(W)
    for start in range(0, len(X), batch):
        rows = slice(start, start + batch) if order is None else order[start:start + batch]
        A = [X[rows]]
        labels = y[rows]
        B = len(labels)
        for l in range(L):
            Z = A[l] @ W[l].T + b[l]
            A.append(np.maximum(Z, 0) if l < L - 1 else Z)
        Z = A[L] - A[L].max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        P[np.arange(B), labels] -= 1
        delta = P / B
        for l in reversed(range(L)):
            dW, db = delta.T @ A[l], delta.sum(axis=0)
            if l > 0:
                delta = (delta @ W[l]) * (A[l] > 0)
            W[l] -= lr * dW
            b[l] -= lr * db
