"""The layers contract in pyproject.toml names modules one by one; a module it does not name
would escape the import rules unnoticed. This proves every module of the project has a place."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Django's own entry points, loaded by the framework rather than imported by the project.
FRAMEWORK_MODULES = {"apps", "settings", "celery", "wsgi", "asgi", "embedded", "migrations"}


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return {"roots": config["root_packages"], "layers": layers["layers"]}


def _layer_modules(layers: list[str]) -> set[str]:
    names = set()
    for layer in layers:
        names.update(part.strip() for part in layer.replace("|", ":").split(":"))
    return names


def _project_modules(roots: list[str]) -> set[str]:
    found = set()
    for root in roots:
        for info in pkgutil.walk_packages([str(ROOT / root)], prefix=f"{root}."):
            parts = info.name.split(".")
            if FRAMEWORK_MODULES & set(parts[1:]):
                continue
            found.add(info.name)
    return found


def _covered(module: str, layer_modules: set[str]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in layer_modules)


def test_every_module_is_named_by_a_layer():
    contract = _contract()
    layer_modules = _layer_modules(contract["layers"])
    packages = {
        m for m in _project_modules(contract["roots"]) if (ROOT / m.replace(".", "/")).is_dir()
    }
    missing = sorted(
        module
        for module in _project_modules(contract["roots"]) - packages
        if not _covered(module, layer_modules)
    )
    assert missing == [], f"give these modules a layer in pyproject.toml: {missing}"


def test_every_layer_names_a_real_module():
    contract = _contract()
    modules = _project_modules(contract["roots"])
    unknown = sorted(name for name in _layer_modules(contract["layers"]) if name not in modules)
    assert unknown == []
