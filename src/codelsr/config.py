"""User settings: ``<codelsr home>/config.json``, each overridable by an environment variable.

One setting so far, the switch between a lexical and a learned default:

* ``default_encoder`` (env ``CODELSR_DEFAULT_ENCODER``): the encoder of *new* indexes when
  neither ``codelsr index --encoder`` nor ``index_repo(encoder=...)`` names one. An existing index
  keeps its encoder. Built in: ``lexical``. With a learned encoder here, a first ``codelsr index``
  still answers in seconds: it builds a lexical index first and the learned one in the background
  (``codelsr.index.progressive``).

``codelsr config`` shows the settings, ``codelsr config default_encoder hybrid-code-tiny`` sets
one, ``codelsr config default_encoder --unset`` goes back to the built-in value, and
``CODELSR_DEFAULT_ENCODER=lexical`` keeps lexical for one process or shell whatever the file says.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from codelsr.errors import CodelsrError

CONFIG_FILE = "config.json"
BUILT_IN_DEFAULT_ENCODER = "lexical"
SETTINGS: dict[str, tuple[str, str]] = {  # name -> (environment variable, built-in value)
    "default_encoder": ("CODELSR_DEFAULT_ENCODER", BUILT_IN_DEFAULT_ENCODER),
}


def config_path() -> Path:
    from codelsr.index.catalog import codelsr_home

    return codelsr_home() / CONFIG_FILE


def _read_file() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CodelsrError(f"cannot read the settings file {path}: {exc}; fix or delete it") from exc
    if not isinstance(data, dict):
        raise CodelsrError(f"the settings file {path} must hold a JSON object; fix or delete it")
    return data


def _check_name(name: str) -> None:
    if name not in SETTINGS:
        raise CodelsrError(f"unknown setting {name!r}; settings: {', '.join(sorted(SETTINGS))}")


def setting(name: str) -> tuple[str, str]:
    """(value, where it comes from: the environment variable, the file, or "built-in")."""
    _check_name(name)
    env, built_in = SETTINGS[name]
    if os.environ.get(env, "").strip():
        return os.environ[env].strip(), env
    value = _read_file().get(name)
    if value:
        return str(value), str(config_path())
    return built_in, "built-in"


def set_setting(name: str, value: str | None) -> None:
    """Write ``name`` to the settings file (``None`` removes it); validated before writing."""
    _check_name(name)
    if name == "default_encoder" and value is not None:
        from codelsr.encoders import normalise_spec

        value = normalise_spec(value)  # an unknown encoder is refused here, not at the next index
    data = _read_file()
    if value is None:
        data.pop(name, None)
    else:
        data[name] = value
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def default_encoder() -> str:
    """The encoder spec new indexes get when no encoder is named (see the module doc)."""
    return setting("default_encoder")[0]
