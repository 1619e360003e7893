"""JAX's persistent compilation cache for the commands that train (run, resume, sweep): a second identical run
compiles faster.

The compiled XLA programs are kept under the user cache folder (platformdirs' user cache dir for optlab, then
`jax-cache`; e.g. ~/.cache/optlab/jax-cache on Linux), or in the folder named by $OPTLAB_COMPILE_CACHE.
$OPTLAB_NO_COMPILE_CACHE=1 turns it off. Where platformdirs is not installed and no folder is named, there
is no cache, and no error. Importing this module imports neither JAX nor platformdirs; `enable` does.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_ENV = "OPTLAB_COMPILE_CACHE"
OFF_ENV = "OPTLAB_NO_COMPILE_CACHE"
# JAX keeps only programs that took at least this long to compile (its own default, 1 s, leaves out the
# evaluation programs, ~0.3-0.5 s each on a CPU, and sometimes the epoch itself); below it, eager ops.
MIN_COMPILE_TIME_S = 0.1


def folder() -> Path | None:
    """Where the cache is, or None when it is off (or platformdirs is missing and no folder is named)."""
    if os.environ.get(OFF_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return None
    named = os.environ.get(DIR_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    try:
        import platformdirs
    except ImportError:
        return None
    return Path(platformdirs.user_cache_dir("optlab")) / "jax-cache"


def enable() -> Path | None:
    """Point JAX's persistent compilation cache at `folder()` before anything compiles; returns the folder used.

    Called where the commands that compute start (`optlab run`, `resume`, `sweep`: every experiment compiles
    JAX programs, the ones without an optimizer too); the others never call it and never import JAX. JAX's own
    thresholds (`jax_persistent_cache_min_compile_time_secs`, 1 s by default, and the minimum entry size)
    decide which programs are kept: optlab lowers the minimum compile time to MIN_COMPILE_TIME_S unless
    $JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says otherwise.
    """
    where = folder()
    if where is None:
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:  # set by the user (JAX_COMPILATION_CACHE_DIR): theirs wins
        return Path(jax.config.jax_compilation_cache_dir)
    jax.config.update("jax_compilation_cache_dir", str(where))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return where
