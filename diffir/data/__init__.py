"""Data: MATLAB bicubic resizing, synthetic degradations, LaMa masks, datasets and the DataModule."""

from diffir.data.datamodule import RestorationDataModule
from diffir.data.datasets import (
    FolderDataset,
    ImageSource,
    RestorationDataset,
    SamplesDataset,
)
from diffir.data.degradations import (
    CleanCrop,
    Degradation,
    InpaintingDegradation,
    MotionBlurDegradation,
    SRDegradation,
    apply_kernel,
    quantize,
    random_motion_kernel,
)
from diffir.data.imresize import bicubic_downsample, bicubic_upsample, imresize, mod_crop
from diffir.data.masks import (
    BoxMaskGenerator,
    IrregularMaskGenerator,
    MixedMaskGenerator,
    box_mask,
    irregular_mask,
    lama_mask_generator,
)
from diffir.data.paired import PairedFolderDataset
from diffir.data.realesrgan import (
    DiffJPEG,
    RealESRGANDegradation,
    USMSharp,
    add_gaussian_noise,
    add_poisson_noise,
    bivariate_gaussian_kernel,
    circular_lowpass_kernel,
    filter2d,
    generalized_gaussian_kernel,
    plateau_kernel,
)
from diffir.io import load_image

__all__ = [
    "BoxMaskGenerator",
    "CleanCrop",
    "Degradation",
    "DiffJPEG",
    "FolderDataset",
    "ImageSource",
    "InpaintingDegradation",
    "IrregularMaskGenerator",
    "MixedMaskGenerator",
    "MotionBlurDegradation",
    "PairedFolderDataset",
    "RealESRGANDegradation",
    "RestorationDataModule",
    "RestorationDataset",
    "SRDegradation",
    "SamplesDataset",
    "USMSharp",
    "add_gaussian_noise",
    "add_poisson_noise",
    "apply_kernel",
    "bicubic_downsample",
    "bicubic_upsample",
    "bivariate_gaussian_kernel",
    "box_mask",
    "circular_lowpass_kernel",
    "filter2d",
    "generalized_gaussian_kernel",
    "imresize",
    "irregular_mask",
    "lama_mask_generator",
    "load_image",
    "mod_crop",
    "plateau_kernel",
    "quantize",
    "random_motion_kernel",
]
