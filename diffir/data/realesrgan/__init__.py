"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021), one module per part (docs/method.md §4.2).

=============  ================================================================================================
``kernels``    blur kernel families (Gaussian, generalized, plateau, sinc), their random draw, ``filter2d``
``sharpen``    ``USMSharp``: unsharp masking of the GT targets
``noise``      Gaussian and Poisson noise, colour or grey, per sample
``jpeg``       ``DiffJPEG``: JPEG compression on tensors, a quality per sample
``pool``       the training-pair pool (``_dequeue_and_enqueue``), saved with the checkpoint
``pipeline``   ``RealESRGANDegradation``: the random parameters and the two-stage chain of the parts above
=============  ================================================================================================

The deterministic parts compute the official functions (checked against vectors of the official code in
``tests/parity/degradations.py``).
"""

from .jpeg import DiffJPEG, jpeg_quality_to_factor
from .kernels import (
    KERNEL_FAMILIES,
    KernelSpec,
    bivariate_gaussian_kernel,
    circular_lowpass_kernel,
    filter2d,
    generalized_gaussian_kernel,
    plateau_kernel,
    random_mixed_kernel,
    sample_blur_kernel,
)
from .noise import (
    add_gaussian_noise,
    add_poisson_noise,
    gaussian_noise,
    poisson_levels,
    poisson_noise,
)
from .pipeline import RESIZE_MODES, DegradationParams, Noise, RealESRGANDegradation, Resize
from .pool import TrainingPairPool
from .sharpen import USMSharp

__all__ = [
    "KERNEL_FAMILIES",
    "RESIZE_MODES",
    "DegradationParams",
    "DiffJPEG",
    "KernelSpec",
    "Noise",
    "RealESRGANDegradation",
    "Resize",
    "TrainingPairPool",
    "USMSharp",
    "add_gaussian_noise",
    "add_poisson_noise",
    "bivariate_gaussian_kernel",
    "circular_lowpass_kernel",
    "filter2d",
    "gaussian_noise",
    "generalized_gaussian_kernel",
    "jpeg_quality_to_factor",
    "plateau_kernel",
    "poisson_levels",
    "poisson_noise",
    "random_mixed_kernel",
    "sample_blur_kernel",
]
