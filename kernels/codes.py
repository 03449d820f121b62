"""Integer codes (and the disk-cache switch) shared by every backend.

Kernels take the activation as a small integer so that one generic kernel serves all six
activations (Numba specialises the branch away per call site's constant); the Python layer
maps names to codes with :func:`activation_code`.
"""

from .diskcache import CACHE  # noqa: F401 - the disk-cache switch, re-exported

IDENTITY, RELU, LEAKY_RELU, ELU, SIGMOID, TANH, GELU, SOFTPLUS = range(8)

ACTIVATIONS = {
    "identity": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "gelu": GELU,
    "softplus": SOFTPLUS,
}
#: activation code -> its name
ACTIVATION_NAMES = {code: name for name, code in ACTIVATIONS.items()}

#: activations whose derivative cannot be recovered from their output: for these the
#: derivative kernels take the pre-activation Z instead of the activation A (GELU is not
#: monotonic, so A does not determine Z). Every other f' is computed from A = f(Z).
NEEDS_PREACTIVATION = frozenset({GELU})

#: negative slope of leaky_relu, as torch.nn.LeakyReLU's default
LEAKY_SLOPE = 0.01
#: alpha of elu, as torch.nn.ELU's default
ELU_ALPHA = 1.0


#: other names of the activations (Keras' "linear"), accepted wherever a name is
ACTIVATION_ALIASES = {"linear": "identity"}


def activation_name(name, argument="activation"):
    """The activation's name as the table spells it: case and surrounding blanks do not
    matter ("ReLU", " tanh"), aliases are resolved; else a TypeError or ValueError naming
    `argument`."""
    if not isinstance(name, str):
        raise TypeError(
            f"{argument} must be a string, one of {sorted(ACTIVATIONS)}; got {name!r} "
            f"of type {type(name).__name__}"
        )
    key = name.strip().lower()
    key = ACTIVATION_ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise ValueError(f"{argument} must be one of {sorted(ACTIVATIONS)}; got {name!r}")
    return key


def activation_code(name, argument="activation"):
    """Map an activation name to its kernel code, or raise a ValueError naming `argument`."""
    return ACTIVATIONS[activation_name(name, argument)]
