"""Configuration: loading, JSON-Schema validation with defaults, names, slugs and job seeds."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def job_seed(seed: int, *names: str) -> int:
    """A stable 63-bit seed for one job: the config seed mixed with the job's names."""
    text = "\x1f".join([str(seed), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def slugify(name: str) -> str:
    """File-name-safe slug of a human name: 'offset of 5/4' -> 'offset-of-5_4'."""
    slug = name.strip().lower().replace("/", "_").replace(">=", "ge").replace("<=", "le")
    slug = re.sub(r"[^a-z0-9_.]+", "-", slug).strip("-")
    return slug or "unnamed"


RESAMPLED_PREFIX = "resampled:"


def load_config(path: str | Path, schema_path: str | Path | None = None) -> dict[str, Any]:
    """Read a config file, validate it against the workflow's JSON schema (filling defaults) and
    check the names it cross-references. Outside Snakemake (tests, notebooks) this gives the same
    config the Snakefile sees."""
    from snakemake.utils import validate  # the workflow's own validator, defaults included

    with open(path) as handle:
        config = yaml.safe_load(handle)
    schema = schema_path or Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
    validate(config, str(schema))
    check_config(config)
    return config


def _unknown(kind: str, where: str, name: str, valid: list[str]) -> ConfigError:
    return ConfigError(f"{where}: unknown {kind} {name!r}; valid {kind}s: {sorted(valid)}")


def variant_source_dataset(source: str) -> tuple[str, bool]:
    """'resampled:templates' -> ('templates', True); 'survey' -> ('survey', False)."""
    if source.startswith(RESAMPLED_PREFIX):
        return source[len(RESAMPLED_PREFIX):], True
    return source, False


def whole_holdout_datasets(config: dict[str, Any]) -> list[str]:
    """Data sets held out whole (`holdout.<dataset>.fraction: 1`): their training pool is empty."""
    return [name for name, spec in (config.get("holdout") or {}).items() if spec.get("fraction", 0) >= 1]


def _test_only(dataset: str, where: str) -> ConfigError:
    return ConfigError(f"{where}: data set {dataset!r} is test-only (holdout.{dataset}.fraction: 1), so it has "
                       "no training pool; use it in testsets only")


def check_config(config: dict[str, Any]) -> None:
    """Cross-reference checks JSON Schema cannot express; raises ConfigError naming the culprit."""
    datasets = list(config["datasets"])
    for name in config.get("holdout", {}):
        if name not in datasets:
            raise _unknown("dataset", f"holdout.{name}", name, datasets)
    for name in config.get("resample_templates", {}):
        if name not in datasets:
            raise _unknown("dataset", f"resample_templates.{name}", name, datasets)
    for test, spec in config.get("testsets", {}).items():
        for member in spec["members"]:
            if member["dataset"] not in datasets:
                raise _unknown("dataset", f"testsets.{test}", member["dataset"], datasets)
    resampled = list(config.get("resample_templates", {}))
    test_only = whole_holdout_datasets(config)
    for name in resampled:
        if name in test_only:
            raise _test_only(name, f"resample_templates.{name}")
    for variant, spec in config["variants"].items():
        dataset, is_resampled = variant_source_dataset(spec["source"])
        if is_resampled and dataset not in resampled:
            raise _unknown("resampled dataset", f"variants.{variant!r} source", dataset, resampled)
        if not is_resampled and dataset not in datasets:
            raise _unknown("dataset", f"variants.{variant!r} source", dataset, datasets)
        if dataset in test_only:
            raise _test_only(dataset, f"variants.{variant!r} source")
    variants = list(config["variants"])
    for combo, spec in config["combos"].items():
        for member in spec["members"]:
            if member not in variants:
                raise _unknown("variant", f"combo {combo!r}", member, variants)
    for index, run in enumerate(config["runs"]):
        if run["model"] not in config["models"]:
            raise _unknown("model", f"runs[{index}]", run["model"], list(config["models"]))
        if run["combo"] not in config["combos"]:
            raise _unknown("combo", f"runs[{index}]", run["combo"], list(config["combos"]))
    for kind in ("variants", "combos", "models", "datasets", "testsets"):
        _check_slugs(kind, list(config.get(kind, {})))


def _check_slugs(kind: str, names: list[str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        slug = slugify(name)
        if slug in seen:
            raise ConfigError(f"{kind} {seen[slug]!r} and {name!r} share the file name slug {slug!r}; rename one")
        seen[slug] = name
    if kind != "variants":
        for name in names:
            if slugify(name) != name:
                raise ConfigError(f"{kind} name {name!r} must be file-name safe (letters, digits, _ . -), e.g. {slugify(name)!r}")


def variants_by_slug(config: dict[str, Any]) -> dict[str, str]:
    return {slugify(name): name for name in config["variants"]}


def used_variants(config: dict[str, Any]) -> list[str]:
    """Variants that some run's combo needs (only those are built)."""
    names: list[str] = []
    for combo in used_combos(config):
        for member in config["combos"][combo]["members"]:
            if member not in names:
                names.append(member)
    return names


def used_combos(config: dict[str, Any]) -> list[str]:
    combos: list[str] = []
    for run in config["runs"]:
        if run["combo"] not in combos:
            combos.append(run["combo"])
    return combos


def run_pairs(config: dict[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for run in config["runs"]:
        pair = (run["model"], run["combo"])
        if pair not in pairs:
            pairs.append(pair)
    return pairs
