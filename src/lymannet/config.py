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
