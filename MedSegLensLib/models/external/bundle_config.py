"""A MONAI bundle's config read as data: references followed, nothing evaluated.

MONAI's own `ConfigParser` evaluates every "$..." string as Python (`eval`)
and instantiates any "_target_" it can import, so running it on a user's
bundle runs the bundle author's code. This reader follows "@id" references
between entries (and the trivial "$@id"), builds nothing itself, and accepts a
component only when its "_target_" names a class of an allowed MONAI namespace
(networks, transforms, inferers) and all its arguments are plain values. Any
other expression or macro is refused with the key it sits under.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import CompatibilityError, InputError

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
_SEPARATORS = ("::", "#")
_IGNORED_KEYS = ("_desc_", "_requires_")


def find_inference_config(bundle: Path) -> Path:
    for name in CONFIG_NAMES:
        if (bundle / "configs" / name).is_file():
            return bundle / "configs" / name
    raise InputError(f"{bundle}: no configs/inference.json or .yaml; a MONAI bundle folder is expected")


class BundleConfig:
    """The parsed config; `resolved(id)` is an entry with references replaced by their plain values."""

    def __init__(self, data: Any, source: str):
        if not isinstance(data, dict):
            raise InputError(f"{source}: the config is not a mapping of ids to entries")
        self.data, self.source = data, source

    def has(self, entry_id: str) -> bool:
        try:
            self._lookup(entry_id)
            return True
        except KeyError:
            return False

    def _lookup(self, entry_id: str) -> Any:
        node: Any = self.data
        for sep in _SEPARATORS[1:]:
            entry_id = entry_id.replace(sep, _SEPARATORS[0])
        for part in entry_id.split(_SEPARATORS[0]):
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def resolved(self, entry_id: str, depth: int = 0) -> Any:
        try:
            value = self._lookup(entry_id)
        except (KeyError, IndexError, ValueError, TypeError):
            raise CompatibilityError(f"{self.source}: the config has no entry '{entry_id}'") from None
        return self._resolve(value, entry_id, depth)

    def _resolve(self, value: Any, where: str, depth: int) -> Any:
        if depth > 32:
            raise CompatibilityError(f"{self.source}: references under '{where}' loop")
        if isinstance(value, dict):
            return {k: self._resolve(v, f"{where}::{k}", depth) for k, v in value.items() if k not in _IGNORED_KEYS}
        if isinstance(value, list):
            return [self._resolve(v, f"{where}::{i}", depth) for i, v in enumerate(value)]
        if isinstance(value, str):
            reference = value[1:] if value.startswith("$@") and _plain_id(value[2:]) else value
            if reference.startswith("@") and _plain_id(reference[1:]):
                return self.resolved(reference[1:], depth + 1)
            if value.startswith(("$", "%")):
                raise CompatibilityError(
                    f"{self.source}: entry '{where}' is a Python expression or macro ({value[:60]}); MedSegLens reads "
                    "bundle configs as data and never evaluates them: replace it with its plain value"
                )
        return value


def _plain_id(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "_-:#" for c in text)


def component(spec: Any, namespaces: dict[str, Any], where: str, source: str) -> tuple[str, dict[str, Any]] | None:
    """(class name, plain arguments) of a resolved component spec; None when it is `_disabled_`."""
    if not isinstance(spec, dict) or "_target_" not in spec:
        raise CompatibilityError(f"{source}: entry '{where}' is not a component (no _target_)")
    if spec.get("_disabled_") in (True, "true", "True"):
        return None
    if spec.get("_mode_", "default") != "default":
        raise CompatibilityError(
            f"{source}: entry '{where}' uses _mode_ '{spec['_mode_']}'; only plain instances are read"
        )
    target = str(spec["_target_"])
    name = target.rsplit(".", 1)[-1]
    prefix = target.rsplit(".", 1)[0] if "." in target else None
    # the class always comes from `namespaces`, never from importing the string; a dotted target must name its
    # own module path so that e.g. "somewhere.else.UNet" is not silently read as MONAI's UNet
    if name not in namespaces or (prefix is not None and prefix not in _module_names(namespaces[name])):
        raise CompatibilityError(
            f"{source}: entry '{where}' builds '{target}', which is not a MONAI class MedSegLens allows here; "
            "bundles whose networks or transforms are their own Python code cannot be imported (export a state "
            "dict and use --format state-dict)"
        )
    return name, {k: v for k, v in spec.items() if not k.startswith("_")}


def _module_names(obj: Any) -> tuple[str, ...]:
    module = getattr(obj, "__module__", "")
    parts = module.split(".")
    return tuple(".".join(parts[:i]) for i in range(2, len(parts) + 1))
