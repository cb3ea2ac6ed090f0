"""Pins live in requirements.txt; the conda environments must agree with them."""

from __future__ import annotations

import yaml

from conftest import REPO

CONDA_TO_PIP = {"pytorch": "torch", "matplotlib-base": "matplotlib"}


def pip_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version.strip()
    return pins


def test_requirements_pin_every_direct_dependency_exactly():
    pins = pip_pins()
    for name in [
        "numpy",
        "pandas",
        "astropy",
        "fitsio",
        "torch",
        "matplotlib",
        "pyyaml",
        "snakemake",
        "snakemake-executor-plugin-slurm",
        "jsonschema",
        "h5py",
        "scipy",
        "pytest",
        "snakefmt",
    ]:
        assert name in pins, name
    assert pins["torch"] == "2.13.0"
    assert pins["snakemake"].startswith("9.")
    assert pins["snakemake-executor-plugin-slurm"].startswith("2.")


def test_conda_envs_match_requirements():
    pins = pip_pins()
    env_files = sorted((REPO / "envs").glob("*.yaml"))
    assert len(env_files) >= 3
    for env_file in env_files:
        env = yaml.safe_load(env_file.read_text())
        for dependency in env["dependencies"]:
            if isinstance(dependency, str) and "=" in dependency and not dependency.startswith("python="):
                name, version = dependency.split("=", 1)
                assert pins[CONDA_TO_PIP.get(name, name)] == version, (env_file.name, dependency)
