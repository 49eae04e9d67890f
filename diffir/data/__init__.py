"""Data: MATLAB bicubic resizing, synthetic degradations, LaMa masks, datasets and the DataModule.

The names below are imported on first use (``from diffir.data import SRDegradation`` works as usual): the
DataModule needs Lightning and the Real-ESRGAN pipeline torchvision, which restoring an image does not.
"""

import importlib

# eager: ``imresize`` is also the name of its module, which would shadow the function once imported
from diffir.data.imresize import bicubic_downsample, bicubic_upsample, imresize, mod_crop

_EXPORTS = {
    "FolderDataset": "diffir.data.datasets",
    "ImageSource": "diffir.data.datasets",
    "RestorationDataset": "diffir.data.datasets",
    "SamplesDataset": "diffir.data.datasets",
    "CleanCrop": "diffir.data.degradations",
    "Degradation": "diffir.data.degradations",
    "InpaintingDegradation": "diffir.data.degradations",
    "MotionBlurDegradation": "diffir.data.degradations",
    "SRDegradation": "diffir.data.degradations",
    "apply_kernel": "diffir.data.degradations",
    "quantize": "diffir.data.degradations",
    "random_motion_kernel": "diffir.data.degradations",
    "BoxMaskGenerator": "diffir.data.masks",
    "IrregularMaskGenerator": "diffir.data.masks",
    "MixedMaskGenerator": "diffir.data.masks",
    "box_mask": "diffir.data.masks",
    "irregular_mask": "diffir.data.masks",
    "lama_mask_generator": "diffir.data.masks",
    "PairedFolderDataset": "diffir.data.paired",
    "DiffJPEG": "diffir.data.realesrgan",
    "RealESRGANDegradation": "diffir.data.realesrgan",
    "USMSharp": "diffir.data.realesrgan",
    "add_gaussian_noise": "diffir.data.realesrgan",
    "add_poisson_noise": "diffir.data.realesrgan",
    "bivariate_gaussian_kernel": "diffir.data.realesrgan",
    "circular_lowpass_kernel": "diffir.data.realesrgan",
    "filter2d": "diffir.data.realesrgan",
    "generalized_gaussian_kernel": "diffir.data.realesrgan",
    "plateau_kernel": "diffir.data.realesrgan",
    "load_image": "diffir.io",
    "RestorationDataModule": "diffir.data.datamodule",
}


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


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
