"""Selecting spectra by their truth (spectype, subtype, z, template, r magnitude, exposure time, a
random fraction): the `select:` blocks of test sets and of augmentation recipes."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from .errors import ConfigError

SELECT_KEYS = ("spectype", "subtype", "z", "template", "mag_r", "exptime", "fraction")
Z_TOLERANCE = 1e-6  # template redshifts are 2.0 + 0.1 k in float: 2.6 may be 2.6000000000000005


def _range(value: Any, where: str, key: str) -> tuple[float | None, float | None]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{where}: {key} must be [min, max] (null for open), not {value!r}")
    try:
        low, high = (None if v is None else float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} bounds must be numbers or null, not {value!r}") from None
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{where}: {key} minimum {low} exceeds maximum {high}")
    return low, high


def _list(value: Any, where: str, key: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ConfigError(f"{where}: {key} must list at least one value")
    return values


def validate_select(params: dict | None, where: str, keys: Iterable[str] = SELECT_KEYS) -> dict[str, Any]:
    """Check and normalise selection criteria (see :func:`select_rows`)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown selection key(s) {unknown}; valid: {list(keys)}")
    criteria: dict[str, Any] = {}
    for key, value in params.items():
        if key in ("z", "mag_r"):
            criteria[key] = _range(value, where, key)
        elif key in ("spectype", "subtype"):
            criteria[key] = [("" if v is None else str(v)).strip() for v in _list(value, where, key)]
        elif key in ("template", "exptime"):
            try:
                criteria[key] = [float(v) for v in _list(value, where, key)]
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: {key} values must be numbers, not {value!r}") from None
        elif key == "fraction":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ConfigError(f"{where}: fraction must be a number in (0, 1], not {value!r}")
            criteria[key] = float(value)
    return criteria


def select_rows(truth: pd.DataFrame, criteria: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the rows meeting every criterion: spectype and subtype in list (a truth
    without SUBTYPE has subtype ""; "" selects objects without one), z and mag_r in
    [min, max] (inclusive, null = open), template and exptime in list; then `fraction`: a random
    subset of exactly round(fraction x n) of the rows that passed (drawn with `rng`)."""
    keep = np.ones(len(truth), bool)
    if "spectype" in criteria:
        keep &= truth["SPECTYPE"].astype(str).str.strip().isin(criteria["spectype"]).to_numpy()
    if "subtype" in criteria:
        subtype = (
            truth["SUBTYPE"].fillna("").astype(str).str.strip()
            if "SUBTYPE" in truth
            else pd.Series("", index=truth.index)
        )
        keep &= subtype.isin(criteria["subtype"]).to_numpy()
    for key, column in (("z", "Z"), ("mag_r", "MAG_R")):
        if key in criteria:
            low, high = criteria[key]
            values = truth[column].to_numpy(np.float64)
            if low is not None:
                keep &= values >= low - Z_TOLERANCE
            if high is not None:
                keep &= values <= high + Z_TOLERANCE
    for key, column in (("template", "TEMPLATE"), ("exptime", "EXPTIME")):
        if key in criteria:
            values = truth[column].to_numpy(np.float64)
            keep &= np.isclose(values[:, None], np.asarray(criteria[key])[None, :], rtol=0, atol=1e-3).any(
                axis=1
            )
    if "fraction" in criteria:
        passed = np.flatnonzero(keep)
        chosen = rng.choice(len(passed), size=int(round(criteria["fraction"] * len(passed))), replace=False)
        keep[:] = False
        keep[passed[chosen]] = True
    return keep
