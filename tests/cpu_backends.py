"""The CPU backends that exist in this checkout (numpy always; numba once its module is there).

Reliability tests are parametrised over these, so a new CPU backend is covered without editing
them. A backend module that exists but fails to import makes those tests fail, not skip.
"""

import importlib.util

CPU_BACKENDS = ["numpy"] + [name for name in ("numba",)
                            if importlib.util.find_spec({"numba": "minireptile.backends.numba_cpu"}[name]) is not None]
