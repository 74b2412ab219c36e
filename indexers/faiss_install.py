"""Refuse an environment holding two FAISS distributions.

faiss-cpu and faiss-gpu (and its -cuXX/-cuvs variants) all install the same ``faiss``
package directory, so with two installed its files come from both wheels: the one
observed mix (faiss-gpu, then faiss-cpu pulled in by milvus-lite) fails at ``import
faiss`` looking for CUDA libraries, and uninstalling either wheel deletes files the other
needs. Checked once per process, before an index backend is used.
"""

from __future__ import annotations

import functools
import importlib.metadata

_CPU = "faiss-cpu"


class FaissInstallError(ImportError):
    """More than one FAISS distribution is installed."""


@functools.cache
def installed_faiss_distributions() -> tuple[str, ...]:
    """Names of the installed distributions that provide the ``faiss`` package."""
    providers = importlib.metadata.packages_distributions().get("faiss", [])
    return tuple(sorted({name.lower() for name in providers}))


def check_single_faiss() -> None:
    """Raise :class:`FaissInstallError`, with the fix, when faiss-cpu and a GPU build are
    both installed."""
    found = installed_faiss_distributions()
    gpu = [name for name in found if name != _CPU]
    if _CPU in found and gpu:
        raise FaissInstallError(
            f"both {_CPU} and {', '.join(gpu)} are installed; they overwrite each other's "
            f"`faiss` package. Keep one: for GPU, `pip uninstall -y {_CPU} {' '.join(gpu)}` "
            f"then `pip install {gpu[0]}` (the Milvus Lite extra needs {_CPU}: use the "
            "FAISS backend or a Milvus server on GPU machines)"
        )
