"""python infer.py ckpt=<file> input=<image or folder> output=<folder> [mask=...] [tile=...] [device=...] [seed=...]"""

from diffir.runs.cli import infer

if __name__ == "__main__":
    infer()
