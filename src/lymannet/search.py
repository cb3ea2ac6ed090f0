"""Hyper-parameter searches as configured (`tune.searches.<name>`): settings, the search space
and the model specs built from it. Light on purpose (no torch, no Optuna): the Snakefile imports it
to check the config. The Optuna side (workers, study, reports) is `lymannet.tune`.

A search starts from a base model (`models.<model>`) and varies values of its spec addressed by
dotted paths, e.g. ``conv.layers``, ``conv.filters``, ``train.lr``, ``offset_activation``:

    space:
      conv.layers: {type: int, low: 2, high: 20}
      train.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
      offset_activation: {type: categorical, choices: [sigmoid, rescaled_sigmoid, linear]}

A model `{from_search: <name>}` is the base model with the best parameters found (see
`results/tune/<name>/best_model.yaml`); other keys next to `from_search` override that spec.

Searches chain (thesis section 4.4, a second search after the first, tables 4.1 then 4.2): a
search's base model may itself be `{from_search: <first>}`; the second search then starts from
the first one's best spec (its tune jobs wait for it) and varies what its own space names.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import ConfigError

SPACE_TYPES = ("int", "float", "categorical")
DIRECTIONS = {"val_loss": "minimize", "pe_score": "maximize"}
SAMPLERS = ("tpe", "gp", "random")
PRUNERS = ("median", "hyperband", "none")

# `tune.searches.<name>` defaults (the config schema fills the same ones; tests/test_defaults.py).
SEARCH_DEFAULTS: dict[str, Any] = {
    "objective": "val_loss",
    "n_trials": 20,
    "epochs_per_trial": 5,
    "workers": 1,
    "sampler": "tpe",
    "pruner": "median",
    "startup_trials": 10,
    "warmup_epochs": 1,
    "storage": None,
    "heartbeat_seconds": 60,
    "stale_after_seconds": 600,
}
# What defines the study: changing any of these starts a new study (another name in the same
# storage); n_trials, workers, sampler, pruner and storage settings may change mid-search.
STUDY_KEYS = ("model", "combo", "space", "objective", "epochs_per_trial")


@dataclass(frozen=True)
class Param:
    """One searched hyper-parameter: a dotted path into the model spec and its distribution."""

    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        """The search range as in thesis tables 4.1/4.2: "[2, 20] (int)", "[a, b, c]"."""
        if self.kind == "categorical":
            return "[" + ", ".join(str(choice) for choice in self.choices) + "]"
        scale = ", log" if self.log else ""
        step = f", step {self.step:g}" if self.step is not None else ""
        return f"[{self.low:g}, {self.high:g}] ({self.kind}{scale}{step})"


def parse_param(path: str, spec: dict[str, Any]) -> Param:
    kind = spec.get("type")
    where = f"tune search space {path!r}"
    if kind not in SPACE_TYPES:
        raise ConfigError(f"{where}: type must be one of {list(SPACE_TYPES)}, not {kind!r}")
    if kind == "categorical":
        choices = tuple(spec.get("choices") or ())
        if not choices:
            raise ConfigError(f"{where}: a categorical parameter needs a non-empty 'choices' list")
        return Param(path, kind, choices=choices)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: an {kind} parameter needs 'low' and 'high'")
    low, high = spec["low"], spec["high"]
    if kind == "int":
        low, high = int(low), int(high)
    log, step = bool(spec.get("log", False)), spec.get("step")
    if low > high:
        raise ConfigError(f"{where}: low {low} > high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log-scale range needs low > 0, not {low}")
    if log and step is not None:
        raise ConfigError(f"{where}: 'step' and 'log' cannot be combined (Optuna)")
    return Param(
        path,
        kind,
        float(low) if kind == "float" else low,
        float(high) if kind == "float" else high,
        log,
        step,
    )


def parse_space(space: dict[str, Any]) -> list[Param]:
    if not space:
        raise ConfigError("a tune search needs a non-empty 'space'")
    return [parse_param(path, spec) for path, spec in space.items()]


def search_settings(search: dict[str, Any]) -> dict[str, Any]:
    """A search's settings with defaults filled in, checked."""
    settings = {**SEARCH_DEFAULTS, **search}
    for key in ("model", "combo", "space"):
        if key not in settings:
            raise ConfigError(f"a tune search needs {key!r}")
    if settings["objective"] not in DIRECTIONS:
        raise ConfigError(f"tune objective must be one of {list(DIRECTIONS)}, not {settings['objective']!r}")
    if settings["sampler"] not in SAMPLERS:
        raise ConfigError(f"tune sampler must be one of {list(SAMPLERS)}, not {settings['sampler']!r}")
    if settings["pruner"] not in PRUNERS:
        raise ConfigError(f"tune pruner must be one of {list(PRUNERS)}, not {settings['pruner']!r}")
    for key in ("n_trials", "epochs_per_trial", "workers"):
        if int(settings[key]) < 1:
            raise ConfigError(f"tune {key} must be >= 1, not {settings[key]}")
    parse_space(settings["space"])
    return settings


# ----------------------------------------------------------------------------------------------
# Dotted paths into a model spec


def get_path(spec: dict[str, Any], path: str) -> Any:
    node: Any = spec
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(path)
        node = node[key]
    return node


def set_path(spec: dict[str, Any], path: str, value: Any) -> None:
    """Set spec[a][b] = value for path "a.b", creating missing intermediate mappings."""
    *parents, leaf = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"tune search space {path!r}: {key!r} is not a mapping in the model spec")
    node[leaf] = value


def apply_params(base_spec: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of `base_spec` with each dotted path set to its value."""
    spec = copy.deepcopy(base_spec)
    for path, value in params.items():
        set_path(spec, path, value)
    return spec


def check_paths(base_spec: dict[str, Any], space: list[Param], where: str) -> None:
    """Every path must name a value of the base spec (with its defaults): a typo such as
    "conv.filter" must fail before anything runs, not be silently ignored by the network."""
    for param in space:
        try:
            get_path(base_spec, param.path)
        except KeyError:
            raise ConfigError(
                f"{where}: {param.path!r} is not a key of the base model's spec "
                f"(e.g. conv.layers, conv.filters, train.lr, offset_activation)"
            ) from None


def merge_spec(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested merge: mappings merge key by key, anything else in `overrides` replaces."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_spec(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ----------------------------------------------------------------------------------------------
# The config's searches and the models that use them


def searches(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return (config.get("tune") or {}).get("searches") or {}


def searched_models(config: dict[str, Any]) -> dict[str, str]:
    """{model name: search name} of the models defined as `{from_search: <search>}`."""
    return {name: spec["from_search"] for name, spec in config["models"].items() if "from_search" in spec}


def best_spec_path(search: str) -> str:
    return f"results/tune/{search}/best_model.yaml"


def resolve_spec(spec: dict[str, Any], best_spec: str | None) -> dict[str, Any]:
    """The spec a model trains from: `spec` itself, or for `{from_search: <search>}` the search's
    best spec (`best_spec`, its best_model.yaml) with the other keys of `spec` overriding it."""
    if best_spec is None:
        return spec
    with open(best_spec) as handle:
        best = yaml.safe_load(handle)
    return merge_spec(best, {key: value for key, value in spec.items() if key != "from_search"})


def study_name(search: str, settings: dict[str, Any], base_spec: dict[str, Any]) -> str:
    """ "<search>-<hash of what defines the study>": rerunning continues the study; changing the
    space, objective, base model or combo starts a fresh one (the old one stays in the storage)."""
    defining = {key: settings[key] for key in STUDY_KEYS}
    defining["base_spec"] = base_spec
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()
    return f"{search}-{digest[:10]}"


def base_best_spec(config: dict[str, Any], search: str) -> str | None:
    """The best_model.yaml a search starts from when its base model is `{from_search: <first>}`
    (a chained search), else None (the base model is a full spec)."""
    base = config["models"][searches(config)[search]["model"]]
    return best_spec_path(base["from_search"]) if "from_search" in base else None


def search_chain(config: dict[str, Any], search: str) -> list[str]:
    """The searches `search` builds on, first one first, `search` last: [first, ..., search]."""
    chain = [search]
    while True:
        base = config["models"][searches(config)[chain[0]]["model"]]
        if "from_search" not in base:
            return chain
        previous = base["from_search"]
        if previous in chain:
            raise ConfigError(
                f"tune.searches.{search}: searches chain in a circle: " + " -> ".join([previous, *chain])
            )
        if previous not in searches(config):
            return chain  # reported by check_tune_config
        chain.insert(0, previous)


def chained_base_spec(config: dict[str, Any], search: str) -> dict[str, Any]:
    """What a search's base spec holds before any search ran: the first search's full base model
    with each chained `{from_search}` model's override keys merged on. Its keys are those of every
    best_model.yaml along the chain, so a space path can be checked against it up front."""
    chain = search_chain(config, search)
    spec = config["models"][searches(config)[chain[0]]["model"]]
    for name in chain[1:]:
        base = config["models"][searches(config)[name]["model"]]
        spec = merge_spec(spec, {key: value for key, value in base.items() if key != "from_search"})
    return spec


def check_tune_config(config: dict[str, Any]) -> None:
    """Cross-reference checks of `tune:` and of `from_search` models (JSON Schema cannot)."""
    models, combos = config["models"], config["combos"]
    for name, search in searches(config).items():
        where = f"tune.searches.{name}"
        settings = search_settings(search)
        if settings["model"] not in models:
            raise ConfigError(f"{where}: unknown model {settings['model']!r}; valid models: {sorted(models)}")
        base = models[settings["model"]]
        if "from_search" in base and base["from_search"] not in searches(config):
            raise ConfigError(
                f"{where}: the base model {settings['model']!r} is from_search {base['from_search']!r}, "
                f"which is not a search; valid searches: {sorted(searches(config))}"
            )
        if settings["combo"] not in combos:
            raise ConfigError(f"{where}: unknown combo {settings['combo']!r}; valid combos: {sorted(combos)}")
        check_paths(chained_base_spec(config, name), parse_space(settings["space"]), where)
    for model, search in searched_models(config).items():
        if search not in searches(config):
            raise ConfigError(
                f"models.{model}: from_search {search!r} is not a search; "
                f"valid searches: {sorted(searches(config))}"
            )
