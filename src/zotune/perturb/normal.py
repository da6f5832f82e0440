"""Standard normal values from 32 random bits, in float32 arithmetic that every backend rounds the same way
(``gaussian``), or from 16 of them and a table (``gaussian16``, at the end of this module).

The transform is the inverse normal CDF, so one value costs one hash of its counter (``noise.py``), and the
stream stays counter-based: any element can be drawn without the ones before it, on any number of threads.

It uses only operations IEEE 754 rounds exactly (+, -, *, /, integer and bit operations, int-to-float
conversion) and never a library's ``log``, ``sqrt`` or ``cos``: vectorised math libraries (Sleef in compiled
kernels, MKL's VML in torch's eager ``sqrt``) differ from each other by an ulp here and there, and a seeded stream
must give the same bits compiled or not, on every machine, or a run could not be replayed from its seeds.

- The top bit is the sign; 30 of the other bits give v = (2m + 1) / 2^32, the midpoints of 2^30 equal bins of
  (0, 1/2): |z| = -Φ⁻¹(v), from 0 to 6.23 (v = 2^-32).
- Φ⁻¹ is Wichura's algorithm AS 241 (Applied Statistics 37(3), 1988), its single-precision form PPND7 (relative
  error about 1e-7): a rational function of q = 1/2 - v for |q| <= 0.425, else of r = sqrt(-ln v) (its third
  branch, r > 5, is for v < 1.4e-11, which 32 bits never give).
- ln v comes from v's float exponent e and mantissa m in [1, 2): e ln 2 + 2 artanh((m - 1) / (m + 1)), the odd
  series to the 11th power (error below 1e-7 for m < 2); sqrt from the reciprocal-square-root bit trick and three
  Newton steps (relative error 3e-11 before rounding).

Over all 2^30 magnitudes, |z| is within 2.4e-6 of the exact quantile (4.7e-7 relative); the sign bit makes the
distribution exactly symmetric.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["standard_normal", "standard_normal16", "gaussian16_magnitudes", "GAUSSIAN16_BINS", "GAUSSIAN16_TABLE"]

# AS 241 (PPND7) coefficients, lowest power first; the denominators' constant terms are 1.
_CENTRAL_NUM = (3.3871327179, 50.434271938, 159.29113202, 59.109374720)
_CENTRAL_DEN = (1.0, 17.895169469, 78.757757664, 67.187563600)
_TAIL_NUM = (1.4234372777, 2.7568153900, 1.3067284816, 0.17023821103)
_TAIL_DEN = (1.0, 0.73700164250, 0.12021132975)
# 2 artanh(s) = 2 (s + s^3/3 + s^5/5 + ...), as a polynomial in s^2 times s.
_ARTANH2 = (2.0, 2 / 3, 2 / 5, 2 / 7, 2 / 9, 2 / 11)
_LN2 = math.log(2.0)


def _horner(x: torch.Tensor, coefs: tuple[float, ...]) -> torch.Tensor:
    """sum_k coefs[k] x^k, highest power first: one multiply and one add a coefficient, always in this order."""
    acc = x * coefs[-1] + coefs[-2]
    for coef in reversed(coefs[:-2]):
        acc = acc * x + coef
    return acc


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt(x) for positive normal floats, by the bit trick for 1/sqrt(x) and three Newton steps."""
    y = (0x5F3759DF - (x.view(torch.int32) >> 1)).view(torch.float32)
    half = x * 0.5
    for _ in range(3):
        y = y * (1.5 - half * y * y)
    return x * y


def _log(v: torch.Tensor) -> torch.Tensor:
    """ln v for positive normal floats, from the exponent and an artanh series in the mantissa."""
    bits = v.view(torch.int32)
    exponent = ((bits >> 23) - 127).to(torch.float32)
    mantissa = ((bits & 0x7FFFFF) | 0x3F800000).view(torch.float32)  # v / 2^exponent, in [1, 2)
    s = (mantissa - 1.0) / (mantissa + 1.0)
    return exponent * _LN2 + s * _horner(s * s, _ARTANH2)


def upper_quantile(v: torch.Tensor) -> torch.Tensor:
    """-Φ⁻¹(v) for float32 v in [2^-32, 1/2]: the z with P(Z > z) = v."""
    q = 0.5 - v
    central = q <= 0.425
    rr = 0.180625 - q * q  # 0.425^2 - q^2
    t = _sqrt(-_log(v)) - 1.6
    num = torch.where(central, q * _horner(rr, _CENTRAL_NUM), _horner(t, _TAIL_NUM))
    den = torch.where(central, _horner(rr, _CENTRAL_DEN), _horner(t, _TAIL_DEN))
    return num / den


def standard_normal(bits: torch.Tensor) -> torch.Tensor:
    """One N(0, 1) float32 value for each int32 of uniformly random ``bits`` (see the module docstring)."""
    sign = ((bits >> 31) | 1).to(torch.float32)  # the top bit: an arithmetic shift gives -1 or 0, | 1 makes ±1
    v = (((bits & 0x3FFFFFFF) << 1) | 1).to(torch.float32) * (2.0 ** -32)
    return sign * upper_quantile(v)


# --- The 16-bit Gaussian (``noise="gaussian16"``) ----------------------------------------------------------------
#
# A value from 16 of the 32 random bits and a table, no arithmetic: the top bit is the sign and the next 15 pick one
# of 2^15 bins of |Z| of equal probability (bin k holds the |z| with P(0 <= Z < z) between k / 2^16 and
# (k + 1) / 2^16); the value is the bin's conditional mean E[|Z| | bin k], times a common factor 1 + 7.4e-7 that
# makes E[z^2] = 1 (to float32 rounding), so that E[z z^T] = I and SPSA with it is unbiased as with N(0, I). So z
# takes 65,536 equally likely values, symmetric about 0 exactly, with the mean of |Z| within every bin kept: its CDF
# is within 2^-16 (1.5e-5) of the normal one everywhere, and |z| stops at 4.39 (the mean of the top bin, P(|Z| >
# 4.17) = 2^-15). Its cost is one table read a value: on the 2-core CPUs measured, about twice the values a second
# of the inverse-CDF transform above (docs/performance.md).
#
# The table ships as a file (gaussian16.safetensors) rather than being computed at import: ``ndtri`` and ``exp``
# come from the platform's math libraries, which may differ in a last bit between machines, and a seeded stream
# must be the same everywhere. ``gaussian16_magnitudes`` is how it was made (tests check the file against it).

_GAUSSIAN16_FILE = Path(__file__).with_name("gaussian16.safetensors")
GAUSSIAN16_BINS = 1 << 15


def gaussian16_magnitudes() -> torch.Tensor:
    """The 16-bit Gaussian's 2^15 magnitudes in float64, before rounding to float32 (see above)."""
    half = 2 * GAUSSIAN16_BINS  # bins of |Z| hold 1 / 2^15 of the probability: 1 / 2^16 on each side of 0
    edges = torch.special.ndtri(0.5 + torch.arange(GAUSSIAN16_BINS + 1, dtype=torch.float64) / half)
    low, high = edges[:-1], edges[1:]
    # E[|Z| | low <= |Z| < high] = (phi(low) - phi(high)) / (1 / 2^16), with phi(low) - phi(high) written as
    # -phi(low) expm1(-(high - low)(high + low) / 2): near 0 the two densities agree to 10 digits.
    density = torch.exp(-0.5 * low * low) / math.sqrt(2 * math.pi)
    exponent = torch.where(torch.isinf(high), -math.inf, -(high - low) * (high + low) / 2)
    means = -half * density * torch.expm1(exponent)
    return means / means.square().mean().sqrt()


def _load_gaussian16() -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(_GAUSSIAN16_FILE))["magnitudes"]


# The 2^15 magnitudes, float32, the value of each bin (a test checks them against ``gaussian16_magnitudes``).
GAUSSIAN16_TABLE = _load_gaussian16()


def standard_normal16(bits: torch.Tensor) -> torch.Tensor:
    """One value of the 16-bit Gaussian (float32) for each int32 of uniformly random ``bits``: bit 31 its sign,
    bits 16-30 its bin (see above)."""
    sign = ((bits >> 31) | 1).to(torch.float32)
    return sign * GAUSSIAN16_TABLE[(bits >> 16) & (GAUSSIAN16_BINS - 1)]
