"""Benchmark the simulator: spectra per second including FITS writing, vs the 1,000/s floor.

.venv/bin/python benchmarks/bench_simulate.py [n_spectra]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from lymannet.simulate import simulate_dataset

FLOOR_SPECTRA_PER_SECOND = 1000.0


def main(n_spectra: int = 4000) -> float:
    n_lbg, n_other = n_spectra // 2, n_spectra // 4
    spec = {
        "mode": "continuous",
        "exptime": [1800, 7200],
        "mag_r": [22.5, 25.0],
        "populations": {
            "LBG": {"n": n_lbg, "z": [2.0, 4.0]},
            "QSO": {"n": n_other, "z": [1.8, 4.0]},
            "ELG": {"n": n_spectra - n_lbg - n_other, "z": [0.05, 0.2]},
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        simulate_dataset(spec, 1, "bench", Path(tmp) / "coadd.fits", Path(tmp) / "truth.fits")
        elapsed = time.perf_counter() - start
    rate = n_spectra / elapsed
    print(
        f"simulate: {n_spectra} spectra in {elapsed:.2f} s = {rate:,.0f} spectra/s "
        f"({rate / FLOOR_SPECTRA_PER_SECOND:.2f}x the {FLOOR_SPECTRA_PER_SECOND:,.0f}/s floor; "
        "includes drawing, rendering, noise and FITS writing)"
    )
    return rate


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
