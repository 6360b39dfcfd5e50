"""THE registry: codec name -> codec class and the settings that name implies.

One place only: the CLI, evaluation, benchmarks and tests all read it. A class may be registered under
several names (variants such as `jpeg444` or `fmm-entropy`): each name fixes some settings of the class.

A leaf: it imports nothing of the package. The codec modules import it and register themselves when
`neuralcodecs` (its __init__) imports `neuralcodecs.codecs`, which every import of the package does first.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

_REGISTRY: dict[str, "Entry"] = {}


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    defaults: dict[str, Any] = field(default_factory=dict)  # settings this name implies

    def config(self, settings: dict[str, Any]) -> Any:
        """The codec's Config from `settings` over the name's defaults; ValueError if the Config refuses them
        or they contradict a setting the name fixes (a user's arguments and a file's settings alike)."""
        try:
            cfg = self.cls.Config(**{**self.defaults, **settings})
        except TypeError as e:
            raise ValueError(f"{self.name}: bad settings ({e})") from None
        # a setting whose default is True or False takes only those (a file could hold "false", which is true)
        wrong = [f.name for f in dataclasses.fields(cfg) if isinstance(f.default, bool)
                 and not isinstance(getattr(cfg, f.name), bool)]
        if wrong:
            raise ValueError(f"{self.name}: {', '.join(wrong)} is true or false, got "
                             + ", ".join(repr(getattr(cfg, k)) for k in wrong))
        fixed = sorted(k for k, v in self.defaults.items() if getattr(cfg, k) != v)
        if fixed:
            raise ValueError(f"{self.name} fixes {fixed}; use the codec name that has the settings you want")
        return cfg


def register(name: str, **defaults: Any) -> Callable[[type], type]:
    """Class decorator: `@register("jpeg444", subsampling="444")`. Stackable for variants."""

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"codec name {name!r} registered twice")
        unknown = set(defaults) - set(cls.Config.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{name}: {sorted(unknown)} are not settings of {cls.__name__}")
        _REGISTRY[name] = Entry(name, cls, dict(defaults))
        return cls

    return deco


def list_codecs(ready: bool = False) -> list[str]:
    """Names of all registered codecs, in registration order; with ready=True only those that can code now
    (a learned codec is registered before its first trained weights are installed)."""
    return [name for name, e in _REGISTRY.items() if not ready or e.cls.trained(name)]


def get_entry(name: str) -> Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown codec {name!r}; known: {', '.join(_REGISTRY)}") from None


def create_codec(name: str, quality: Any = None, **settings: Any) -> Any:  # a Codec (registry imports nothing above it)
    """Make a codec by name. `quality` picks a rate point (None: the codec's default); other keyword
    arguments are settings of the codec's Config. Invalid settings raise ValueError."""
    entry = get_entry(name)
    quality = entry.cls.default_quality if quality is None else quality
    return entry.cls.from_config(entry.config({**settings, "quality": quality}), name=name)

