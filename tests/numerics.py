"""How close two float32 computations of one function must be, on any CPU.

Two correct computations of a function differ by the rounding of their summation order: the CPU's vector
width (AVX512, AVX2, none), the BLAS blocking, a fused or composed kernel. Summing n float32 terms in any
order errs by at most about n·ε times the magnitude of the terms (ε = 2⁻²³, Higham's γₙ), so results of
magnitude M that each sum about n terms may differ by n·ε·M. Nothing tighter holds on every CPU; a wrong
formula misses it by orders of magnitude. ``ATEN_CPU_CAPABILITY=default`` shows on one machine what a CPU
without AVX2 computes (``make test`` repeats the numerical tests so).
"""

from __future__ import annotations

import torch

EPS32 = torch.finfo(torch.float32).eps  # 2**-23: the spacing of float32 numbers at 1


def float32_tolerance(terms: int, magnitude: float) -> float:
    """The summation-order bound n·ε·M for results of magnitude ``magnitude`` that each sum ``terms`` terms."""
    return terms * EPS32 * magnitude


def assert_float32_close(
    actual: torch.Tensor, expected: torch.Tensor, *, terms: int, msg: str | None = None
) -> None:
    """``actual`` equals ``expected`` up to float32 summation order: every element within ``terms``·ε·M,
    M = max |expected| (the magnitude of what is compared, so small elements of a large tensor get the
    tensor's rounding, which is what they carry)."""
    magnitude = float(expected.detach().abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(
        actual,
        expected,
        rtol=0,
        atol=float32_tolerance(terms, magnitude),
        msg=None if msg is None else (lambda m: f"{msg}: {m}"),
    )


def assert_within_relative(
    actual: torch.Tensor, expected: torch.Tensor, relative: float, msg: str | None = None
) -> None:
    """Every element within ``relative`` × max |expected| of ``expected`` (a parity promise such as "within
    1e-4 of outputs of order 1", stated relative to the outputs' magnitude)."""
    magnitude = float(expected.detach().abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(
        actual,
        expected,
        rtol=0,
        atol=relative * magnitude,
        msg=None if msg is None else (lambda m: f"{msg}: {m}"),
    )
