"""lymannet: QuasarNET-style 1D CNNs for spectra, from raw FITS files to purity/efficiency plots."""

__version__ = "0.1.0"
