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
    schema = (
        schema_path or Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
    )
    validate(config, str(schema))
    expand_combos(config)
    check_config(config)
    return config


def expand_combos(config: dict[str, Any]) -> dict[str, Any]:
    """Spell out each combo's `again_from` (in place; returns the config): every member is made
    again from another data set, as the variant `<prefix><member>` with its source's data set
    replaced (`resampled:` kept), and joins the combo. A combo then trains on more simulated
    objects of the same kinds without its variants written out twice. A variant of that name
    already in the config must be the same; run before :func:`check_config`, which checks the
    new sources like any other."""
    variants = config["variants"]
    for combo, spec in config["combos"].items():
        again = spec.pop("again_from", None)
        if again is None:
            continue
        where = f"combos.{combo}.again_from"
        made: list[str] = []
        for member in spec["members"]:
            if member not in variants:
                raise _unknown("variant", f"combo {combo!r}", member, list(variants))
            dataset, is_resampled = variant_source_dataset(variants[member]["source"])
            if dataset not in again["datasets"]:
                raise ConfigError(
                    f"{where}: member {member!r} comes from data set {dataset!r}, which "
                    f"again_from.datasets does not map; it maps {sorted(again['datasets'])}"
                )
            source = (RESAMPLED_PREFIX if is_resampled else "") + again["datasets"][dataset]
            name, variant = again["prefix"] + member, {**copy.deepcopy(variants[member]), "source": source}
            if variants.get(name, variant) != variant:
                raise ConfigError(f"{where}: variant {name!r} exists and is not {member!r} from {source!r}")
            variants[name] = variant
            made.append(name)
        spec["members"] = spec["members"] + [name for name in made if name not in spec["members"]]
    return config


def _unknown(kind: str, where: str, name: str, valid: list[str]) -> ConfigError:
    return ConfigError(f"{where}: unknown {kind} {name!r}; valid {kind}s: {sorted(valid)}")


def variant_source_dataset(source: str) -> tuple[str, bool]:
    """'resampled:templates' -> ('templates', True); 'survey' -> ('survey', False)."""
    if source.startswith(RESAMPLED_PREFIX):
        return source[len(RESAMPLED_PREFIX) :], True
    return source, False


def whole_holdout_datasets(config: dict[str, Any]) -> list[str]:
    """Data sets held out whole (`holdout.<dataset>.fraction: 1`): their training pool is empty."""
    return [name for name, spec in (config.get("holdout") or {}).items() if spec.get("fraction", 0) >= 1]


def _test_only(dataset: str, where: str) -> ConfigError:
    return ConfigError(
        f"{where}: data set {dataset!r} is test-only (holdout.{dataset}.fraction: 1), so it has "
        "no training pool; use it in testsets only"
    )


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
    check_seeds(config["runs"], config["models"])
    for kind in ("variants", "combos", "models", "datasets", "testsets"):
        _check_slugs(kind, list(config.get(kind, {})))


def _check_slugs(kind: str, names: list[str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        slug = slugify(name)
        if slug in seen:
            raise ConfigError(
                f"{kind} {seen[slug]!r} and {name!r} share the file name slug {slug!r}; rename one"
            )
        seen[slug] = name
    if kind != "variants":
        for name in names:
            if slugify(name) != name:
                raise ConfigError(
                    f"{kind} name {name!r} must be file-name safe (letters, digits, _ . -), e.g. {slugify(name)!r}"
                )


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
    """Every (model, combo) that `train` trains for `runs:`, in order, without repeats: a run with
    `seeds` gives one pair per seed, its members (:func:`member_name`)."""
    pairs: list[tuple[str, str]] = []
    for run in config["runs"]:
        for pair in run_members(run):
            if pair not in pairs:
                pairs.append(pair)
    return pairs


# Seeds (runs[].seeds, runs[].ensemble). Seed k of model M is trained as the model-name alias
# "M.seed<k>" (seed 0 is M itself), so its files are results/models/M.seed<k>/<combo>/..., its
# predictions and scores likewise, and its job seed job_seed(seed, "M.seed<k>", combo) differs from
# every other member's; a run with the default `seeds: 1` keeps every path and job it had. The
# ensemble of a run's seeds is the prediction catalogue "M.ensemble" (lymannet.ensemble).
SEED_ALIAS = re.compile(r"^(?P<model>.+)\.seed(?P<seed>[0-9]+)$")
ENSEMBLE_SUFFIX = ".ensemble"


def run_seeds(run: dict[str, Any]) -> list[int]:
    """The seed indices of a run: `seeds: n` -> 0..n-1, `seeds: [1, 2, 3]` -> those (in order,
    repeats dropped); absent: [0]."""
    seeds = run.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list, tuple)):
        raise ConfigError(
            f"run {run.get('model')}/{run.get('combo')}: seeds must be a count or a list of "
            f"seed indices, not {seeds!r}"
        )
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"run {run.get('model')}/{run.get('combo')}: seeds must be >= 1, not {seeds}")
        return list(range(seeds))
    indices = list(dict.fromkeys(seeds))
    if not indices or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in indices):
        raise ConfigError(
            f"run {run.get('model')}/{run.get('combo')}: seeds must list seed indices >= 0, " f"not {seeds!r}"
        )
    return indices


def member_name(model: str, seed: int) -> str:
    """The model name seed `seed` of `model` trains under: the model itself for seed 0."""
    return model if seed == 0 else f"{model}.seed{seed}"


def ensemble_name(model: str) -> str:
    return f"{model}{ENSEMBLE_SUFFIX}"


def run_members(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(member model name, combo) of each seed of a run."""
    return [(member_name(run["model"], seed), run["combo"]) for seed in run_seeds(run)]


def base_model(name: str, models: dict[str, Any] | list[str]) -> tuple[str, int | None]:
    """(config model, seed index) of a `{model}` wildcard value: (name, 0) for a configured
    model, (M, k) for "M.seed<k>", (M, None) for the ensemble "M.ensemble"."""
    if name in models:
        return name, 0
    match = SEED_ALIAS.match(name)
    if match and match["model"] in models:
        return match["model"], int(match["seed"])
    if name.endswith(ENSEMBLE_SUFFIX) and name[: -len(ENSEMBLE_SUFFIX)] in models:
        return name[: -len(ENSEMBLE_SUFFIX)], None
    raise ConfigError(
        f"unknown model {name!r}; valid models: {sorted(models)} (and <model>.seed<k> for "
        "the seeds of a run with `seeds`)"
    )


def seed_groups(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs trained with several seeds or scored as an ensemble, one entry per (model, combo):
    {model, combo, seeds, members, ensemble} (entries of one pair merged: seeds in order of
    appearance, ensemble if any asks). A run of one seed without ensemble is no group."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        key = (run["model"], run["combo"])
        group = groups.setdefault(key, {"model": key[0], "combo": key[1], "seeds": [], "ensemble": False})
        group["seeds"] += [k for k in run_seeds(run) if k not in group["seeds"]]
        group["ensemble"] = group["ensemble"] or bool(run.get("ensemble", False))
    out = []
    for group in groups.values():
        if len(group["seeds"]) < 2 and not group["ensemble"]:
            continue
        group["members"] = [(member_name(group["model"], k), group["combo"]) for k in group["seeds"]]
        out.append(group)
    return out


def ensemble_runs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(ensemble model name, combo) of every `runs:` entry with `ensemble: true`."""
    return [(ensemble_name(g["model"]), g["combo"]) for g in seed_groups(config["runs"]) if g["ensemble"]]


REFINED_SUFFIX = ".refined"


def refined_runs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(refined model name, combo) of every `runs:` entry with `refine: true`, in order: the
    run's catalogues with redshifts refined by its combo's learned templates (lymannet.refine)."""
    pairs: list[tuple[str, str]] = []
    for run in config["runs"]:
        pair = (f"{run['model']}{REFINED_SUFFIX}", run["combo"])
        if run.get("refine", False) and pair not in pairs:
            pairs.append(pair)
    return pairs


def ensemble_members(config: dict[str, Any]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Every ensemble of `runs:` and of each experiment's runs: (ensemble, combo) -> its members.
    Two that name one ensemble must agree on its seeds."""
    sources = {"runs": config["runs"]}
    for name, spec in (config.get("experiments") or {}).items():
        sources[f"experiments.{name}"] = spec.get("runs") or []
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    declared: dict[tuple[str, str], str] = {}
    for where, runs in sources.items():
        for group in seed_groups(runs):
            if not group["ensemble"]:
                continue
            key = (ensemble_name(group["model"]), group["combo"])
            if key in found and found[key] != group["members"]:
                raise ConfigError(
                    f"ensemble {key[0]}/{key[1]}: {declared[key]} and {where} give it other seeds "
                    f"({[m for m, _ in found[key]]} vs {[m for m, _ in group['members']]}); "
                    "give both the same seeds"
                )
            found.setdefault(key, group["members"])
            declared.setdefault(key, where)
    return found


def check_seeds(runs: list[dict[str, Any]], models: dict[str, Any], where: str = "runs") -> None:
    """`seeds` and `ensemble` of a runs list (schema: their types; here: their meaning)."""
    for index, run in enumerate(runs):
        seeds = run_seeds(run)
        if run.get("ensemble") and len(seeds) < 2:
            raise ConfigError(
                f"{where}[{index}] ({run['model']}/{run['combo']}): ensemble: true needs at least "
                f"2 seeds, the run has {seeds}"
            )
    for name in models:
        try:
            base, seed = base_model(name, [m for m in models if m != name])
        except ConfigError:
            continue
        what = "the ensemble" if seed is None else f"seed {seed}"
        raise ConfigError(
            f"model name {name!r} is the name of {what} of model {base!r} (runs with `seeds`); " "rename it"
        )
