"""What every workflow script shares: logging to the rule's log file, progress lines, clean failure.

Scripts call :func:`run` with their ``main``; a :class:`LymannetError` (bad input, bad config)
becomes one line on stderr and in the log, and a non-zero exit, instead of a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, LymannetError

log = logging.getLogger("lymannet")


# Environment variables that pin the CPU kernels torch uses: ATen's vectorised kernels, oneDNN's
# convolutions and MKL's BLAS (MKL_CBWR: Intel's "conditional numerical reproducibility"). Each
# library otherwise picks kernels by the CPU's instruction set (AVX2, AVX-512, AMX), and kernels
# of other vector widths sum in another order: the same run then gives other weights on another
# x86 machine. AVX2 is what every x86-64 server of the last decade has.
CPU_ISA_PINS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
    "native": {},
}


def pin_cpu_isa(isa: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Pin torch's CPU kernels to one instruction set (config `cpu_isa`), so that a run repeats
    bit for bit on any x86 machine that has it, given the same thread count. `native` leaves the
    choice to the libraries (fastest on AVX-512/AMX machines, repeatable on that CPU only).

    Sets the variables in `environ` (default: this process's, which jobs started from it
    inherit); they take effect where torch has not yet run a kernel. Returns what it set."""
    if isa not in CPU_ISA_PINS:
        raise ConfigError(f"cpu_isa must be one of {sorted(CPU_ISA_PINS)}, not {isa!r}")
    environ = os.environ if environ is None else environ
    for name in {key for pins in CPU_ISA_PINS.values() for key in pins}:
        environ.pop(name, None)
    environ.update(CPU_ISA_PINS[isa])
    return dict(CPU_ISA_PINS[isa])


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX); elsewhere torch emulates
    it and bf16 autocast trains about 30x slower than fp32 (measured on an AVX2 AMD EPYC)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cpu_arithmetic() -> dict[str, Any]:
    """What decided this process's CPU arithmetic, for provenance beside models and scores."""
    import torch

    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        **{name: os.environ.get(name, "") for name in CPU_ISA_PINS["avx2"]},
    }


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to the rule's log file (appending)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)


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

    def __init__(self, total: int, what: str = "items", every_seconds: float = 10.0, logger: logging.Logger = log):
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
        return (f"{self.count}/{self.total} {self.what} ({100 * self.count / max(self.total, 1):.0f}%), "
                f"{rate:,.0f} {self.what}/s, elapsed {elapsed:.0f}s, ETA {remaining:.0f}s")

    def done(self) -> float:
        """Log the final rate; return it (items per second)."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.logger.info("done: %d %s in %.1fs (%,.0f %s/s)".replace("%,", "%"), self.count, self.what,
                         elapsed, self.count / elapsed, self.what)
        return self.count / elapsed
