"""python train.py task=<sr|realsr|deblur|inpainting> stage=<1|2> [experiment=...] [data=...] [model=...] [key=value ...]"""

from diffir.runs.cli import train

if __name__ == "__main__":
    train()
