"""CPU arithmetic pinning (config `cpu_isa`): what makes a CPU run repeat across x86 machines."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from lymannet.errors import ConfigError
from lymannet.runtime import CPU_ISA_PINS, pin_cpu_isa

HAS_AVX2 = platform.machine() in ("x86_64", "AMD64") and " avx2" in Path("/proc/cpuinfo").read_text()


def test_pin_sets_and_clears_the_library_variables():
    environ = {"PATH": "/bin", "MKL_CBWR": "AUTO", "OPENBLAS_CORETYPE": "SkylakeX"}
    assert pin_cpu_isa("avx2", environ) == CPU_ISA_PINS["avx2"]
    assert environ == {"PATH": "/bin", **CPU_ISA_PINS["avx2"]}
    assert (
        CPU_ISA_PINS["avx2"].items()
        >= {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}.items()
    )
    if HAS_AVX2:
        assert environ["OPENBLAS_CORETYPE"] == "Haswell"
        # numpy's AVX-512 dispatch targets, by the names this numpy uses (2.4: X86_V4 AVX512_ICL AVX512_SPR)
        disabled = environ["NPY_DISABLE_CPU_FEATURES"].split()
        assert disabled and all(name == "X86_V4" or name.startswith("AVX512") for name in disabled)
    assert pin_cpu_isa("native", environ) == {}
    assert environ == {"PATH": "/bin"}  # native: every library picks its own kernels again
    with pytest.raises(ConfigError, match="cpu_isa must be one of .*'avx512'"):
        pin_cpu_isa("avx512", environ)


@pytest.mark.skipif(not HAS_AVX2, reason="needs an x86 CPU with AVX2")
def test_a_pinned_process_runs_avx2_kernels():
    """The variables take effect in a child process (as Snakemake's jobs are): ATen reports the
    AVX2 kernels even on a CPU that has AVX-512, and the provenance record says so."""
    code = (
        "import torch; from lymannet.runtime import cpu_arithmetic; "
        "import json; torch.ones(8).sum(); print(json.dumps(cpu_arithmetic()))"
    )
    environ = dict(os.environ)
    pin_cpu_isa("avx2", environ)
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    ).stdout
    record = json.loads(out)
    assert record["capability"] == "AVX2"
    assert record["ONEDNN_MAX_CPU_ISA"] == "AVX2" and record["MKL_CBWR"] == "AVX2"
    # numpy runs no AVX-512 loop, OpenBLAS its Haswell kernels (where the library names them)
    assert not any(t == "X86_V4" or t.startswith("AVX512") for t in record["numpy_targets"])
    assert record["openblas_core"] in ("Haswell", "")


@pytest.mark.skipif(not HAS_AVX2, reason="needs an x86 CPU with AVX2")
def test_pinned_numpy_rounds_as_the_c_library():
    """What the numpy/OpenBLAS pin is for: numpy's AVX-512 exp/log/power loops (Intel SVML) round
    about 5% of float64 exp and power results otherwise than the C library, which numpy calls on
    AVX2-only CPUs; pinned, numpy gives the C library's numbers on any x86 CPU with AVX2."""
    code = (
        "import math, numpy as np; x = np.random.default_rng(2).uniform(-20, 20, 20000); "
        "print(sum(a != math.exp(b) for a, b in zip(np.exp(x).tolist(), x.tolist())), "
        "sum(a != b ** 1.37 for a, b in zip(np.power(np.abs(x), 1.37).tolist(), np.abs(x).tolist())))"
    )
    environ = dict(os.environ)
    pin_cpu_isa("avx2", environ)
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["0", "0"]
