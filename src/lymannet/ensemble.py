"""Ensembles of a run's seeds (config `runs: [{model, combo, seeds: n, ensemble: true}]`, rule
`predict_ensemble`): the members' prediction catalogues of one test set -> one catalogue, written
like any other and scored by the `score` rule.

- PROB: the mean of the members' calibrated PROB (each calibrated on the same validation split,
  so the same class mix); PROB_STD their standard deviation (how much the seeds disagree).
- Z_PRED, ZERR, BEST_LINE: those of the most confident member (the highest PROB; ties: the
  first member). Not the median of the members' redshifts: PROB is the probability of a true
  target *with a correct redshift*, so the member with the highest PROB is the one most likely to
  have the right redshift, while the median also takes the redshifts of members that do not see a
  target (their best line's position is then noise) and, when members pick different lines, lands
  on whichever lies in the middle. ``z_rule="median"`` gives the median for comparison.
- One pseudo-line ENSEMBLE: C_ENSEMBLE = PROB and Z_ENSEMBLE = Z_PRED, so the score stage's
  threshold scan runs over the mean PROB (with min_lines 1, as for the end-to-end models' CLASS
  line); IS_<CLASS> is PROB > 0.5 (more likely than not a target with a correct redshift).
- Per member k (its seed index): PROB_S<k>, ZPRED_S<k>; BEST_SEED: the seed Z_PRED comes from.

There is no calibration of its own: the header says CALIB = F and ENSEMBLE = the member count,
the provenance lists the members' catalogues and model files.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputFileError, LymannetError
from .fileio import provenance
from .lines import Line
from .predict import TRUTH_KEEP, read_catalogue, write_catalogue

log = logging.getLogger("lymannet.ensemble")

ENSEMBLE_LINE = Line("ENSEMBLE", float("nan"), "class")
Z_RULES = ("most_confident", "median")


def combine_members(
    tables: list[pd.DataFrame], seeds: list[int], target_class: str = "LBG", z_rule: str = "most_confident"
) -> pd.DataFrame:
    """The ensemble catalogue's columns from the members' tables (rows in the same order)."""
    if z_rule not in Z_RULES:
        raise ValueError(f"z_rule must be one of {Z_RULES}, not {z_rule!r}")
    if len(tables) != len(seeds) or len(tables) < 2:
        raise ValueError(
            f"an ensemble needs two members or more, one seed index each ({len(tables)} tables, "
            f"seeds {seeds})"
        )
    first = tables[0]
    for seed, table in zip(seeds, tables):
        if "PROB" not in table:
            raise LymannetError(
                f"member seed {seed} has no PROB column: ensembles average calibrated "
                "catalogues (rule calibrate)"
            )
        if len(table) != len(first) or not np.array_equal(
            table["TARGETID"].to_numpy(), first["TARGETID"].to_numpy()
        ):
            raise LymannetError(
                f"member seed {seed} lists other spectra than seed {seeds[0]} (TARGETIDs differ)"
            )
    prob = np.stack([t["PROB"].to_numpy(np.float64) for t in tables])  # (members, rows)
    z_pred = np.stack([t["Z_PRED"].to_numpy(np.float64) for t in tables])
    zerr = np.stack(
        [t["ZERR"].to_numpy(np.float64) if "ZERR" in t else np.full(len(first), np.nan) for t in tables]
    )
    if not (np.isfinite(prob).all() and np.isfinite(z_pred).all()):
        raise LymannetError("a member catalogue has NaN PROB or Z_PRED")
    rows = np.arange(len(first))
    best = prob.argmax(axis=0)  # the first of equal maxima
    mean = prob.mean(axis=0)
    if z_rule == "most_confident":
        z, err = z_pred[best, rows], zerr[best, rows]
    else:
        z, err = np.median(z_pred, axis=0), np.median(zerr, axis=0)
    best_line = (
        np.stack([t["BEST_LINE"].astype(str).to_numpy() for t in tables])[best, rows]
        if all("BEST_LINE" in t for t in tables)
        else np.full(len(first), "")
    )
    cls = target_class.upper()
    is_target = mean > 0.5
    table: dict[str, Any] = {name: first[name].to_numpy() for name in TRUTH_KEEP if name in first}
    table.update(
        {
            "Z_PRED": z.astype(np.float32),
            "ZERR": err.astype(np.float32),
            "PROB": mean.astype(np.float32),
            "PROB_STD": prob.std(axis=0, ddof=1).astype(np.float32),
            "BEST_SEED": np.asarray(seeds, np.int32)[best],
            "BEST_LINE": best_line,
            "C_BEST": mean.astype(np.float32),
            f"IS_{cls}": is_target,
            "Z_QN": z.astype(np.float32),
            "Z_QN_CONF": mean.astype(np.float32),
            f"IS_{cls}_QN": is_target.astype(np.int16),
        }
    )
    for seed, member_prob, member_z in zip(seeds, prob, z_pred):
        table[f"PROB_S{seed}"] = member_prob.astype(np.float32)
        table[f"ZPRED_S{seed}"] = member_z.astype(np.float32)
    table[f"C_{ENSEMBLE_LINE.name}"] = mean.astype(np.float32)
    table[f"Z_{ENSEMBLE_LINE.name}"] = z.astype(np.float32)
    return pd.DataFrame(table)


def ensemble_file(
    members: list[str | Path], seeds: list[int], output: str | Path, name: str, z_rule: str = "most_confident"
) -> pd.DataFrame:
    """Read the members' catalogues of one test set, write the ensemble's; return its table."""
    if len(members) != len(seeds):
        raise ValueError(f"{len(members)} member catalogues for {len(seeds)} seeds")
    catalogues = [read_catalogue(path) for path in members]
    classes = {str(c.header.get("TARGCLS", "LBG")).strip() for c in catalogues}
    if len(classes) != 1:
        raise InputFileError(f"members detect different classes {sorted(classes)}", members[0])
    target_class = classes.pop()
    table = combine_members([c.table for c in catalogues], list(seeds), target_class, z_rule)
    shas = [str(c.header.get("MODELSHA", "")) for c in catalogues]
    record = provenance(
        {"ensemble": name, "seeds": list(seeds), "z_rule": z_rule},
        {f"member_{seed}": str(path) for seed, path in zip(seeds, members)},
    )
    record["members"] = [
        {"seed": seed, "catalogue": str(path), "model": c.model, "model_sha256": sha}
        for seed, path, c, sha in zip(seeds, members, catalogues, shas)
    ]
    record["calibration"] = None  # PROB is the members' mean, not calibrated again
    header = [
        {"name": "CALIB", "value": False, "comment": "PROB: mean of the members' calibrated PROB"},
        {"name": "MODEL", "value": f"ensemble {name}"[:60], "comment": "ensemble of a run's seeds"},
        {
            "name": "MODELSHA",
            "value": hashlib.sha256("".join(shas).encode()).hexdigest(),
            "comment": "sha256 of the members' sha256s",
        },
        {"name": "ENSEMBLE", "value": len(members), "comment": "members (seeds), see PROVENANCE"},
        {"name": "ENSZRULE", "value": z_rule, "comment": "Z_PRED from the most confident member, or median"},
        {"name": "TARGCLS", "value": target_class, "comment": "class the members detect"},
        {"name": "CTHRESH", "value": 0.5, "comment": "IS_*: PROB > CTHRESH"},
        {"name": "MINLINES", "value": 1, "comment": "one pseudo-line, C_ENSEMBLE = PROB"},
        {"name": "NLINES", "value": 1, "comment": "lines (see LINES HDU)"},
    ]
    write_catalogue(output, table, (ENSEMBLE_LINE,), header, record)
    log.info(
        "ensemble %s of seeds %s: %d spectra, %d with PROB > 0.5; Z_PRED from the %s member",
        name,
        seeds,
        len(table),
        int(table[f"IS_{target_class.upper()}"].sum()),
        z_rule.replace("_", " "),
    )
    return table
