"""Run `vse reproduce` with NumPy's BLAS-backed and reducing functions refusing calls from vse.

Used by tests/studies/test_reproduce_anywhere.py in a subprocess. A recorded number that went
through BLAS (np.dot, matmul, einsum, linalg, ...) or a NumPy reduction (np.mean, np.sum, ...)
would carry the rounding of one machine's kernel; vse sums through vse.core.exact instead. The
patch refuses only calls made directly from vse's own modules: matplotlib, drawing a plot, may
use np.dot on its transforms, which changes no recorded number. `@` and ndarray methods cannot
be patched; tests/core/test_exact.py reads the source for those.
"""

import sys

import numpy as np
import numpy.linalg

REFUSED = ["dot", "vdot", "inner", "matmul", "einsum", "tensordot", "corrcoef", "cov"]
REFUSED += ["mean", "sum", "std", "var", "average", "nanmean", "nansum", "median"]
LINALG = ["norm", "solve", "lstsq", "inv", "svd", "eig", "eigh", "det", "qr", "cholesky", "pinv", "multi_dot"]


def _guard(module, name):
    real = getattr(module, name)

    def guarded(*args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == "vse" or caller.startswith("vse."):
            raise AssertionError(
                f"{caller} called numpy {module.__name__}.{name}: a recorded number through BLAS or a NumPy reduction"
            )
        return real(*args, **kwargs)

    setattr(module, name, guarded)


for n in REFUSED:
    _guard(np, n)
for n in LINALG:
    _guard(numpy.linalg, n)

from vse.cli.main import main  # noqa: E402  (after the patch, so vse binds the guarded functions)

try:
    main(["reproduce"], standalone_mode=False)
finally:
    heavy = sorted(m for m in ("torch", "torchvision", "transformers", "sentence_transformers") if m in sys.modules)
    assert not heavy, f"the replay imported {heavy}: `make reproduce`'s light install has none of them"
