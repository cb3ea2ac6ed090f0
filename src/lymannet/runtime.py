"""What every workflow script shares: logging to the rule's log file, progress lines, clean failure.

Scripts call :func:`run` with their ``main``; a :class:`LymannetError` (bad input, bad config)
becomes one line on stderr and in the log, and a non-zero exit, instead of a traceback.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, LymannetError

log = logging.getLogger("lymannet")


# Environment variables that pin the CPU kernels of every library a job computes with, so that
# a run repeats bit for bit on Intel x86-64 CPUs with AVX2 or AVX-512. Each library otherwise
# picks kernels by the CPU's instruction set (AVX2, AVX-512, AMX), and kernels of other vector
# widths round or sum in another order: the same run then gives other numbers on another machine.
# - torch: ATen's vectorised kernels, oneDNN's convolutions and MKL's BLAS and vector math
#   (MKL_CBWR: Intel's "conditional numerical reproducibility"). MKL honours MKL_CBWR on Intel
#   CPUs only: on AMD CPUs it runs its own branch, and torch's sgemm, sqrt, exp and log round
#   otherwise there (measured under qemu -cpu EPYC-Rome), so training does not repeat on AMD.
# - numpy: its ufunc loops are compiled for several targets and the widest one the CPU has is
#   picked at import; the AVX-512 loops of float64 exp, log, log10, expm1, log1p, power, arctan2
#   and float32 power (Intel SVML) round 1 ulp otherwise than the C library, which the AVX2 build
#   calls (measured; sin, cos, sqrt, sums agree). NPY_DISABLE_CPU_FEATURES names the
#   targets above AVX2 that this numpy was built with (numpy 2.4: X86_V4 AVX512_ICL AVX512_SPR).
# - OpenBLAS (numpy's and scipy's own copies): np.dot/matmul/linalg kernels are picked at load by
#   CPU model (SkylakeX, Cooperlake, Zen, Haswell, ...); OPENBLAS_CORETYPE=Haswell fixes them.
# Read where each library starts (numpy: at import), so they must be in a job's environment before
# Python starts: the Snakefile sets them in its own process, which jobs inherit (local jobs and
# sbatch's --export=ALL alike). AVX2 is what every x86-64 server of the last decade has.
# Checked: pinned, an AVX-512 Xeon gives the data files of an AVX2-only Intel CPU (qemu -cpu
# Haswell) bit for bit up to training, and the same weights in torch training steps; unpinned,
# numpy's AVX-512 log10 and power already change `simulate`.
def _numpy_dispatch() -> tuple[list[str], dict[str, bool]]:
    """numpy's dispatch targets (what it was built for) and the CPU features it uses here."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return list(__cpu_dispatch__), dict(__cpu_features__)


def _numpy_targets_above_avx2() -> str:
    """numpy's dispatch targets that need AVX-512 ('' where it has none, e.g. on ARM)."""
    targets, _ = _numpy_dispatch()
    return " ".join(target for target in targets if target == "X86_V4" or target.startswith("AVX512"))


def _avx2_pins() -> dict[str, str]:
    pins = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
    numpy_targets = _numpy_targets_above_avx2()
    if numpy_targets:
        pins["NPY_DISABLE_CPU_FEATURES"] = numpy_targets
    if platform.machine().lower() in ("x86_64", "amd64"):
        pins["OPENBLAS_CORETYPE"] = "Haswell"
    return pins


CPU_ISA_PINS = {"avx2": _avx2_pins(), "native": {}}
# Every variable a pin may set: pin_cpu_isa clears them all first, so that `native` unpins.
_PIN_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_CBWR",
    "NPY_DISABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
)


def pin_cpu_isa(isa: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Pin the CPU kernels of torch, numpy and OpenBLAS to one instruction set (config `cpu_isa`),
    so that a run repeats bit for bit on any x86 machine that has it, given the same thread
    counts. `native` leaves the choice to the libraries (fastest on AVX-512/AMX machines,
    repeatable on that CPU only).

    Sets the variables in `environ` (default: this process's, which jobs started from it
    inherit); they take effect in processes started afterwards (numpy, OpenBLAS) or where torch
    has not yet run a kernel. Returns what it set."""
    if isa not in CPU_ISA_PINS:
        raise ConfigError(f"cpu_isa must be one of {sorted(CPU_ISA_PINS)}, not {isa!r}")
    environ = os.environ if environ is None else environ
    for name in _PIN_VARIABLES:
        environ.pop(name, None)
    environ.update(CPU_ISA_PINS[isa])
    return dict(CPU_ISA_PINS[isa])


def pick_device(device: str = "auto") -> Any:
    """The torch device a job computes on: 'auto' is CUDA when this job has a GPU, else the CPU;
    asking for CUDA where torch sees none is a clear error. Logs what the scheduler gave us
    (CUDA_VISIBLE_DEVICES) beside what is used."""
    import torch  # here: the Snakefile imports this module to plan jobs

    device = str(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for, but torch sees no CUDA device here (use auto or cpu)"
        )
    log.info(
        "CUDA_VISIBLE_DEVICES=%s; computing on %s", os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), device
    )
    return torch.device(device)


def configure_torch(device: Any, threads: int, deterministic: bool = False) -> None:
    """Threads and kernel choice of one job. `deterministic`: the same kernels every run on a GPU
    too (cuBLAS needs its workspace setting before CUDA starts; cuDNN must not pick kernels by
    timing), so that a resumed run repeats an uninterrupted one. Otherwise GPU runs favour speed
    (cuDNN autotuning, TF32 matmuls) unless the caller turned on deterministic algorithms."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.device(device).type != "cpu":
        torch.backends.cudnn.benchmark = not torch.are_deterministic_algorithms_enabled()
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX); elsewhere torch emulates
    it and bf16 autocast trains about 30x slower than fp32 (measured on an AVX2 AMD EPYC)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def numpy_targets_in_use() -> list[str]:
    """numpy's dispatch targets this process runs (after NPY_DISABLE_CPU_FEATURES)."""
    targets, features = _numpy_dispatch()
    return [target for target in targets if features.get(target)]


def openblas_core() -> str:
    """The kernel set numpy's OpenBLAS runs in this process ('Haswell', 'SkylakeX', ...), '' if unknown."""
    import ctypes
    import glob

    import numpy as np

    libs = Path(np.__file__).parent.parent / "numpy.libs"
    for lib in sorted(glob.glob(str(libs / "*openblas*.so*"))):
        for symbol in ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename"):
            try:
                function = getattr(ctypes.CDLL(lib), symbol)
            except (OSError, AttributeError):
                continue
            function.restype = ctypes.c_char_p
            return function().decode()
    return ""


def cpu_arithmetic() -> dict[str, Any]:
    """What decided this process's CPU arithmetic, for provenance beside models and scores."""
    import torch

    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "numpy_targets": numpy_targets_in_use(),
        "openblas_core": openblas_core(),
        **{name: os.environ.get(name, "") for name in _PIN_VARIABLES},
    }


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to the rule's log file (appending)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True
    )


def run(main: Callable[..., Any], log_path: str | Path | None = None, **kwargs: Any) -> Any:
    """Call ``main(**kwargs)`` with logging set up; bad input exits 1 with a one-line message."""
    setup_logging(log_path)
    try:
        return main(**kwargs)
    except LymannetError as error:
        log.error("%s", error)
        print(f"lymannet: error: {error}", file=sys.stderr)
        sys.exit(1)


class Progress:
    """Periodic progress lines with rate and ETA, for loops over many items.

    >>> progress = Progress(total=n_spectra, what="spectra")
    >>> progress.update(len(chunk))   # logs at most every `every_seconds`
    >>> progress.done()
    """

    def __init__(
        self, total: int, what: str = "items", every_seconds: float = 10.0, logger: logging.Logger = log
    ):
        self.total, self.what, self.every, self.logger = total, what, every_seconds, logger
        self.count = 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self.logger.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.perf_counter()) - self.start, 1e-9)
        rate = self.count / elapsed
        remaining = (self.total - self.count) / rate if rate > 0 else float("inf")
        return (
            f"{self.count}/{self.total} {self.what} ({100 * self.count / max(self.total, 1):.0f}%), "
            f"{rate:,.0f} {self.what}/s, elapsed {elapsed:.0f}s, ETA {remaining:.0f}s"
        )

    def done(self) -> float:
        """Log the final rate; return it (items per second)."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.logger.info(
            "done: %d %s in %.1fs (%,.0f %s/s)".replace("%,", "%"),
            self.count,
            self.what,
            elapsed,
            self.count / elapsed,
            self.what,
        )
        return self.count / elapsed
