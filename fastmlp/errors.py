"""fastmlp's own exception types."""

__all__ = ["DivergenceError"]


class DivergenceError(ValueError, FloatingPointError):
    """Training produced a non-finite loss or non-finite weights.

    A subclass of both FloatingPointError (what fastmlp raised before, and what NumPy raises
    for floating-point trouble) and ValueError (what scikit-learn's MLPs raise: "Solver
    produced non-finite parameter weights..."), so code catching either keeps working.
    """
