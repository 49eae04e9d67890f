"""Data: MATLAB bicubic resizing, synthetic degradations, LaMa masks, datasets and the DataModule."""

from diffir.data.datamodule import RestorationDataModule
from diffir.data.datasets import (
    FolderDataset,
    ImageSource,
    RestorationDataset,
    SamplesDataset,
    load_image,
)
from diffir.data.degradations import (
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

__all__ = [
    "BoxMaskGenerator",
    "Degradation",
    "FolderDataset",
    "ImageSource",
    "InpaintingDegradation",
    "IrregularMaskGenerator",
    "MixedMaskGenerator",
    "MotionBlurDegradation",
    "PairedFolderDataset",
    "RestorationDataModule",
    "RestorationDataset",
    "SRDegradation",
    "SamplesDataset",
    "apply_kernel",
    "bicubic_downsample",
    "bicubic_upsample",
    "box_mask",
    "imresize",
    "irregular_mask",
    "lama_mask_generator",
    "load_image",
    "mod_crop",
    "quantize",
    "random_motion_kernel",
]
