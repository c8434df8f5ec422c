"""numba's CUDA simulator for the GPU kernels' tests (GloVe, word2vec), on machines without a GPU.

tests/conftest.py imports this module before anything imports numba, so that `numba.cuda` is the
simulator (NUMBA_ENABLE_CUDASIM is read once, when numba loads its config). The variable selects
only what `numba.cuda` is: numba's CPU kernels (@njit) compile and run as before. Subprocesses
(the CLI, Ray workers) inherit it; nothing outside the CUDA kernels reads it.

On a machine with a GPU, `NUMBA_ENABLE_CUDASIM=0 pytest tests/workers/test_glove_cuda.py` runs
the same tests on the device.
"""
import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


def simulated() -> bool:
    """Whether numba.cuda is the simulator in this process (the kernels then take CPU arrays)."""
    from numba.core import config

    return bool(config.ENABLE_CUDASIM)
