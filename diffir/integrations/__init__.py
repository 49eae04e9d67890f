"""DiffIR in other tools' model loaders (:mod:`diffir.integrations.spandrel`: ComfyUI, chaiNNer, ...)."""
