"""How numbers read wherever a person reads them (tables, report.html, the terminal): an
interval that cannot be computed is "—", never "[nan, nan]", and a p value below what a float
holds is "< 1e-300", never "0"."""

from __future__ import annotations

import math

#: What an undefined interval (or p value) prints as.
NO_INTERVAL = "—"
#: The smallest p value printed as a number; below it (0.0 included) "< 1e-300".
P_FLOOR = 1e-300


def interval(mean: float, low: float, high: float, spec: str = ".3f") -> str:
    """``"mean [low, high]"`` with format ``spec`` (e.g. ``".3f"``, ``"+.3g"``), or ``"mean —"``
    when either bound is NaN or infinite (one seed's mean, one draw)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:{spec}} {NO_INTERVAL}"
    return f"{mean:{spec}} [{low:{spec.lstrip('+')}}, {high:{spec.lstrip('+')}}]"


def p_value(p: float) -> str:
    """``p`` with two significant digits; ``"< 1e-300"`` below :data:`P_FLOOR`; "—" when
    undefined (NaN)."""
    if not math.isfinite(p):
        return NO_INTERVAL
    return f"< {P_FLOOR:g}" if p < P_FLOOR else f"{p:.2g}"
