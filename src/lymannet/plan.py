"""DAG-time planning: what the workflow's targets and input functions need from the config.

`workflow/rules/common.smk` imports this module to plan jobs, so it stays light (no torch, no
matplotlib): the stages' own modules import what they compute with at their top.

- experiments (config `experiments:`): their runs, test sets, outputs and each kind's inputs;
- survey catalogues (config `classify:`): coadd globs expanded once, files cut into batch jobs;
- the 4MOST wing (config `fourmost:`, :class:`FourmostPlan`): sizes, models, studies and the
  inputs of its rules.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .config import (
    check_seeds,
    ensemble_name,
    run_members,
    run_seeds,
    seed_groups,
    slugify,
    variant_source_dataset,
)
from .errors import ConfigError
from .fourmost.settings import TRAIN_DEFAULTS as FOURMOST_TRAIN_DEFAULTS
from .metrics import DEFAULT_C_TH
from .preprocess import INFERENCE_BATCH
from .search import searches

MERGED_NAME = "catalogue.fits"  # a classify entry's merged catalogue
FAILURES_NAME = "failures.tsv"
SELECTED_MODEL = "results/models/selected_by_val_loss.pt"  # rule select_model: {best_by: val_loss}


KINDS = ("runs", "gallery", "search_chain", "seeds")


# ------------------------------------------------------------------------------------ experiments


def experiments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return config.get("experiments") or {}


def run_label(run: dict[str, Any]) -> str:
    return run.get("label") or f"{run['model']}/{run['combo']}"


def experiment_run_pairs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (model, combo) an experiment trains, in order, without repeats."""
    pairs: list[tuple[str, str]] = []
    for spec in experiments(config).values():
        for run in spec.get("runs") or []:
            for pair in run_members(run):
                if pair not in pairs:
                    pairs.append(pair)
    return pairs


def experiment_testsets(config: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """The test sets an experiment scores on: `testset` (kind runs), `testsets` (kind seeds;
    default the summary's, those without `in_summary: false`)."""
    if spec.get("kind") == "seeds":
        return list(
            spec.get("testsets")
            or [name for name, test in (config.get("testsets") or {}).items() if test.get("in_summary", True)]
        )
    return [spec["testset"]] if spec.get("testset") else []


def check_experiments(config: dict[str, Any]) -> None:
    """Cross-reference checks of `experiments:` (JSON Schema cannot); names the culprit."""
    models, combos, tests = config["models"], config["combos"], config.get("testsets") or {}
    variants = config["variants"]
    for name, spec in experiments(config).items():
        where = f"experiments.{name}"
        if slugify(name) != name:
            raise ConfigError(f"{where}: the name must be file-name safe, e.g. {slugify(name)!r}")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}: kind must be one of {list(KINDS)}, not {kind!r}")
        if kind in ("runs", "seeds"):
            if not spec.get("runs"):
                raise ConfigError(f"{where}: kind {kind} needs a non-empty 'runs' list")
            if kind == "runs":
                if spec.get("testset") not in tests:
                    raise ConfigError(
                        f"{where}: unknown testset {spec.get('testset')!r}; valid: {sorted(tests)}"
                    )
                seeded = [run_label(run) for run in spec["runs"] if "seeds" in run or "ensemble" in run]
                if seeded:
                    raise ConfigError(f"{where}: runs {seeded} have seeds or ensemble: that is kind seeds")
            else:
                for test in experiment_testsets(config, spec):
                    if test not in tests:
                        raise ConfigError(f"{where}: unknown testset {test!r}; valid: {sorted(tests)}")
                check_seeds(spec["runs"], models, where=f"{where}.runs")
                if not any(len(run_seeds(run)) > 1 for run in spec["runs"]):
                    raise ConfigError(f"{where}: kind seeds needs a run with 2 seeds or more (runs[].seeds)")
            labels = [run_label(run) for run in spec["runs"]]
            if len(set(labels)) != len(labels):
                raise ConfigError(f"{where}: two runs share a label: {labels}")
            for index, run in enumerate(spec["runs"]):
                if run["model"] not in models:
                    raise ConfigError(
                        f"{where}.runs[{index}]: unknown model {run['model']!r}; valid: {sorted(models)}"
                    )
                if run["combo"] not in combos:
                    raise ConfigError(
                        f"{where}.runs[{index}]: unknown combo {run['combo']!r}; valid: {sorted(combos)}"
                    )
        elif kind == "gallery":
            if not spec.get("panels"):
                raise ConfigError(f"{where}: kind gallery needs a non-empty 'panels' list")
            for panel in spec["panels"]:
                if slugify(panel["name"]) != panel["name"]:
                    raise ConfigError(f"{where}: panel name {panel['name']!r} must be file-name safe")
                for variant in panel["variants"]:
                    if variant not in variants:
                        raise ConfigError(f"{where}: panel {panel['name']!r}: unknown variant {variant!r}")
        else:
            chain = spec.get("searches") or []
            if not chain:
                raise ConfigError(f"{where}: kind search_chain needs a non-empty 'searches' list")
            for index, search in enumerate(chain):
                if search not in searches(config):
                    raise ConfigError(
                        f"{where}: unknown search {search!r}; valid: {sorted(searches(config))}"
                    )
                if index:
                    base = models[searches(config)[search]["model"]]
                    if base.get("from_search") != chain[index - 1]:
                        raise ConfigError(
                            f"{where}: search {search!r} must start from {chain[index - 1]!r} "
                            f"(its base model needs from_search: {chain[index - 1]})"
                        )


def gallery_panel_files(config: dict[str, Any], panel: dict[str, Any]) -> tuple[str, list[str]]:
    """(the original spectra file, the variant files) of a gallery panel: the training pool of
    the data set the variants descend from, and results/variants/<slug>.fits each."""
    datasets = {variant_source_dataset(config["variants"][v]["source"])[0] for v in panel["variants"]}
    if len(datasets) != 1:
        raise ConfigError(
            f"gallery panel {panel['name']!r}: its variants come from several data sets {sorted(datasets)}"
        )
    return f"results/pool/{datasets.pop()}.fits", [
        f"results/variants/{slugify(v)}.fits" for v in panel["variants"]
    ]


def experiment_outputs(config: dict[str, Any]) -> list[str]:
    outputs: list[str] = []
    for name, spec in experiments(config).items():
        folder = f"results/experiments/{name}"
        if spec["kind"] == "gallery":
            outputs += [f"{folder}/{panel['name']}.png" for panel in spec["panels"]]
        else:
            outputs += [f"{folder}/figure.png", f"{folder}/summary.md", f"{folder}/summary.csv"]
    return outputs


def experiment_run_inputs(spec: dict[str, Any]) -> dict[str, list[str]]:
    """kind runs: each run's prediction catalogue on the experiment's test set, and its history."""
    runs = [(run["model"], run["combo"]) for run in spec["runs"]]
    return {
        "predictions": [f"results/predictions/{m}/{c}/{spec['testset']}.fits" for m, c in runs],
        "histories": [f"results/models/{m}/{c}/history.csv" for m, c in runs],
    }


def experiment_leakage_inputs(config: dict[str, Any], spec: dict[str, Any]) -> dict[str, list[str]]:
    combos = sorted({run["combo"] for run in spec["runs"]})
    return {
        "train": [f"results/combos/{c}/train.fits" for c in combos],
        "val": [f"results/combos/{c}/val.fits" for c in combos],
        "testsets": [f"results/testsets/{t}.fits" for t in experiment_testsets(config, spec)],
    }


def experiment_seeds_inputs(config: dict[str, Any], spec: dict[str, Any]) -> dict[str, list[str]]:
    """kind seeds: the score JSONs of every seed and ensemble on every test set, the members'
    catalogues (for the ensembles of k seeds) and model files."""
    testsets = experiment_testsets(config, spec)
    members: list[tuple[str, str]] = []
    ensembles: list[tuple[str, str]] = []
    for group in seed_groups(spec["runs"]):
        members += [pair for pair in group["members"] if pair not in members]
        if group["ensemble"]:
            ensembles.append((ensemble_name(group["model"]), group["combo"]))
    return {
        "scores": [f"results/scores/{m}/{c}/{t}.json" for m, c in members + ensembles for t in testsets],
        "predictions": [f"results/predictions/{m}/{c}/{t}.fits" for m, c in members for t in testsets],
        "models": [f"results/models/{m}/{c}/calibrated.pt" for m, c in members],
    }


def experiment_search_inputs(spec: dict[str, Any]) -> dict[str, list[str]]:
    return {
        "tables": [f"results/tune/{s}/best_params.csv" for s in spec["searches"]],
        "trials": [f"results/tune/{s}/trials.csv" for s in spec["searches"]],
    }


def gallery_inputs(config: dict[str, Any], spec: dict[str, Any], panel_name: str) -> dict[str, Any]:
    panel = next(p for p in spec["panels"] if p["name"] == panel_name)
    original, variants = gallery_panel_files(config, panel)
    return {"original": original, "variants": variants}


def experiments_of_kind(config: dict[str, Any], kind: str) -> list[str]:
    """The experiments of one kind (a wildcard constraint: "none" when there is none)."""
    return [name for name, spec in experiments(config).items() if spec["kind"] == kind] or ["none"]


# ------------------------------------------------------------------------ survey catalogues


def has_wildcard(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def expand_files(patterns: Iterable[str]) -> list[str]:
    """Sorted, unique coadd paths. A pattern without wildcard is kept as it is, even if the file
    does not exist yet (another rule may make it); `**` matches folders recursively."""
    files: set[str] = set()
    for pattern in patterns:
        pattern = os.path.expanduser(str(pattern))
        if has_wildcard(pattern):
            files.update(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
        else:
            files.add(pattern)
    return sorted(os.path.normpath(path) for path in files)


def mirror_root(patterns: Iterable[str]) -> str:
    """The folder that catalogues mirror: the common folder of the patterns' fixed parts (what comes
    before the first wildcard), so it does not move when files are added."""
    fixed = []
    for pattern in patterns:
        parts = Path(os.path.expanduser(str(pattern))).parts
        cut = next((i for i, part in enumerate(parts) if has_wildcard(part)), len(parts) - 1)
        fixed.append(os.path.abspath(os.path.join(*parts[:cut])) if cut else os.path.abspath("."))
    if not fixed:
        raise ConfigError("no coadd files or patterns given")
    return os.path.commonpath(fixed)


def mirrored_name(path: str, root: str) -> str:
    """The coadd's path below `root` (a catalogue is never gzipped: .fits.gz -> .fits)."""
    relative = os.path.relpath(os.path.abspath(path), root)
    if relative.startswith(".."):
        raise ConfigError(f"{path} is not below the mirror root {root}")
    return relative[:-3] if relative.endswith(".fits.gz") else relative


def plan_batches(files: Sequence[str], files_per_job: int) -> dict[str, list[str]]:
    """Sorted files cut into jobs of about `files_per_job`, at content-defined boundaries: a file
    ends its batch when a hash of its path says so (1 in files_per_job) or the batch reaches twice
    that size. Adding a file changes only the batch it falls in, not every batch after it as a cut
    by position would; batches are named after their last file."""
    batches: dict[str, list[str]] = {}
    current: list[str] = []
    for path in sorted(files):
        current.append(path)
        digest = hashlib.sha1(path.encode()).hexdigest()
        if int(digest[:8], 16) % files_per_job == 0 or len(current) >= 2 * files_per_job:
            batches[f"b{digest[:10]}"] = current
            current = []
    if current:
        batches[f"b{hashlib.sha1(current[-1].encode()).hexdigest()[:10]}"] = current
    return batches


@dataclass(frozen=True)
class CatalogueJobs:
    """A `classify.<name>` entry resolved for the workflow: model file, mirror root, batches."""

    name: str
    model: str
    root: str
    batches: dict[str, list[str]]
    options: dict[str, Any]
    truth: str | None = None

    @property
    def folder(self) -> str:
        return f"results/classify/{self.name}"


RESERVED_NAMES = (MERGED_NAME, FAILURES_NAME, "summary.csv", "summary.md", "summary.png", "batches")


def classify_plan(config: Mapping[str, Any]) -> dict[str, CatalogueJobs]:
    """Every `classify:` entry of a validated config, resolved; ConfigError naming the entry if its
    model run is unknown, no file matches, or a coadd would land on a merged output's name."""
    runs = {(run["model"], run["combo"]) for run in config.get("runs", [])}
    plans = {}
    for name, spec in (config.get("classify") or {}).items():
        model = spec["model"]
        if isinstance(model, Mapping) and "best_by" in model:
            model = SELECTED_MODEL
        elif isinstance(model, Mapping):
            if (model["model"], model["combo"]) not in runs:
                raise ConfigError(
                    f"classify.{name}: model {{model: {model['model']}, combo: {model['combo']}}} is "
                    f"not a run of this config; runs: {sorted(runs)}"
                )
            model = f"results/models/{model['model']}/{model['combo']}/calibrated.pt"
        patterns = [spec["files"]] if isinstance(spec["files"], str) else list(spec["files"])
        files = expand_files(patterns)
        if not files:
            raise ConfigError(f"classify.{name}: no file matches {patterns}")
        root = mirror_root(patterns)
        for path in files:
            if mirrored_name(path, root).split(os.sep)[0] in RESERVED_NAMES:
                raise ConfigError(
                    f"classify.{name}: {path} would be written over the merged output "
                    f"{mirrored_name(path, root)}; use a pattern one folder higher"
                )
        options = {
            "c_th": spec.get("c_th"),
            "min_lines": spec.get("min_lines"),
            "strict": spec.get("strict", False),
            "target_fraction": spec.get("target_fraction"),
            "working_point": spec.get("working_point"),
            "batch_size": spec.get("batch_size", INFERENCE_BATCH),
            "bf16": spec.get("bf16", False),
            "device": spec.get("device", "auto"),
            "fiberstatus": (config.get("ingest") or {}).get("fiberstatus", "zero_only"),
        }
        score = config.get("score") or {}
        if options["min_lines"] is None:
            options["min_lines"] = score.get("min_lines", 1)
        options["default_c_th"] = score.get("c_th", DEFAULT_C_TH)
        plans[name] = CatalogueJobs(
            name,
            str(model),
            root,
            plan_batches(files, spec.get("files_per_job", 20)),
            options,
            spec.get("truth"),
        )
    return plans


# --------------------------------------------------------------------------------- 4MOST wing

FOURMOST_REDSHIFT_KINDS = ("dense", "gru", "quasarnet", "dense_slides")


class FourmostPlan:
    """The jobs of the 4MOST wing (workflow/rules/fourmost.smk) from a validated `fourmost:`."""

    def __init__(self, fourmost: Mapping[str, Any]) -> None:
        self.config = fourmost
        self.redshift_models = [m for m in FOURMOST_REDSHIFT_KINDS if fourmost["pipelines"][m]]

    def root(self, size: str) -> str:
        return f"results/fourmost/{size}"

    def size_spec(self, size: str) -> dict[str, Any]:
        if size not in self.config["sizes"]:
            raise ConfigError(f"fourmost: unknown size {size!r}; valid: {sorted(self.config['sizes'])}")
        return self.config["sizes"][size]

    def model_config(self, model: str) -> dict[str, Any]:
        """A model's entry of fourmost.models; location_bal (BAL troughs taught as negatives) has
        location's settings unless given its own. Nested defaults behind $ref are not filled by
        the validator: lymannet.fourmost fills them."""
        if model == "location_bal" and "location_bal" not in self.config["models"]:
            model = "location"
        return self.config["models"].get(model, {})

    def split(self, size: str) -> Any:
        """The size's train/val/test fractions (sizes.<size>.split), else ingest.split."""
        return self.size_spec(size).get("split") or self.config["ingest"]["split"]

    def localisers(self) -> list[str]:
        """The localisers the DLA calibration compares on validation: location, and location_bal
        when fourmost.dla.bal.method may choose it."""
        if self.config["dla"]["bal"]["method"] in ("best", "negatives", "negatives+mask"):
            return ["location", "location_bal"]
        return ["location"]

    def _with_presence(self, size: str, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.config["pipelines"]["dla_presence"]:
            inputs["presence"] = f"{self.root(size)}/models/presence.pt"
        return inputs

    def calibrate_dla_inputs(self, size: str) -> dict[str, Any]:
        root = self.root(size)
        return self._with_presence(
            size,
            {
                "ingested": f"{root}/ingested.fits",
                "localisers": [f"{root}/models/{m}.pt" for m in self.localisers()],
            },
        )

    def score_dla_location_inputs(self, size: str) -> dict[str, Any]:
        root = self.root(size)
        return self._with_presence(
            size,
            {
                "ingested": f"{root}/ingested.fits",
                "model": f"{root}/models/location.pt",
                "localisers": [f"{root}/models/{m}.pt" for m in self.localisers()],
                "calibrated": f"{root}/models/location_calibrated.pt",
            },
        )

    def train_settings(self, size: str, model: str) -> dict[str, Any]:
        """The model's train settings; the size's `epochs` wins."""
        settings = dict(self.model_config(model).get("train", {}))
        epochs = self.size_spec(size).get("epochs")
        if epochs:
            settings["epochs"] = epochs
        return settings

    # dla/redshift options read only after training (catalogue, calibration, BAL handling, scores)
    AFTER_TRAINING = (
        "calibration",
        "bal",
        "slide_stride",
        "merge_threshold",
        "merge_radius_angstrom",
        "match_tolerance_angstrom",
        "snr_min",
        "catastrophic_dz",
    )

    def train_options(self, model: str) -> dict[str, Any]:
        """The options a network's training reads (window and segment layout, sampling, augmentation,
        redshift range), without those only the catalogue and scores read, so that changing a
        working point or the BAL handling reruns calibration and scoring, not training."""
        options = {
            **self.config["dla"],
            **self.config["redshift"],
            "z": self.config["simulate"]["z"],
            "z_grid": self.config["ingest"]["z_grid"],
            # location_bal: the localiser with BAL troughs taught as negatives
            "bal_trough_windows": (
                self.config["dla"]["bal"]["trough_windows"] if model == "location_bal" else 0
            ),
        }
        return {key: value for key, value in options.items() if key not in self.AFTER_TRAINING}

    def summary_inputs(self, size: str) -> dict[str, Any]:
        root = self.root(size)
        inputs: dict[str, Any] = {
            "redshift": [f"{root}/redshift/{m}/metrics.json" for m in self.redshift_models],
            "models": [f"{root}/models/{m}.pt" for m in self.redshift_models],
        }
        for pipeline, key, model in (
            ("dla_presence", "presence", "presence"),
            ("dla_location", "location", "location"),
        ):
            if self.config["pipelines"][pipeline]:
                inputs[key] = f"{root}/{pipeline}/metrics.json"
                inputs["models"].append(f"{root}/models/{model}.pt")
        return inputs

    def outputs(self) -> list[str]:
        """Targets of the `all` rule (none when fourmost.enabled is false)."""
        if not self.config["enabled"]:
            return []
        root = self.root(self.config["size"])
        outputs = [f"{root}/summary.md", f"{root}/summary.csv"]
        if self.redshift_models:
            outputs.append(f"{root}/redshift/comparison.png")
        return outputs

    # --- the slides' studies (batch size, sample size): overlays of a model's train settings

    def study(self, study: str) -> dict[str, Any]:
        studies = self.config.get("studies", {})
        if study not in studies:
            raise ConfigError(f"fourmost.studies: unknown study {study!r}; valid: {sorted(studies)}")
        return studies[study]

    def variant_settings(self, size: str, model: str, study: str, variant: str) -> dict[str, Any]:
        """The model's train settings with the variant's overlay (the size's epochs win, as for
        the main models)."""
        variants = self.study(study)["variants"]
        if variant not in variants:
            raise ConfigError(
                f"fourmost.studies.{study}: unknown variant {variant!r}; valid: {sorted(variants)}"
            )
        settings = {**self.train_settings(size, model), **variants[variant]}
        epochs = self.size_spec(size).get("epochs")
        if epochs:
            settings["epochs"] = epochs
        return settings

    def variant_is_base(self, size: str, model: str, study: str, variant: str) -> bool:
        """A variant that changes nothing (n_train null, batch_size as configured...) is the main
        model, trained once."""
        base = {**FOURMOST_TRAIN_DEFAULTS, **self.train_settings(size, model)}
        return base == {**FOURMOST_TRAIN_DEFAULTS, **self.variant_settings(size, model, study, variant)}

    def study_inputs(self, size: str, study: str) -> dict[str, list[str]]:
        root = self.root(size)
        metrics, histories = [], []
        for model in self.study(study)["models"]:
            for variant in self.study(study)["variants"]:
                base = (
                    root
                    if self.variant_is_base(size, model, study, variant)
                    else f"{root}/studies/{study}/{variant}"
                )
                metrics.append(f"{base}/redshift/{model}/metrics.json")
                histories.append(f"{base}/models/{model}_history.csv")
        return {"metrics": metrics, "histories": histories}
