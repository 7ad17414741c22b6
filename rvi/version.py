"""rvi's version (a leaf module, so that any module can record it without importing the package)."""

__version__ = "0.15.0"
