"""python eval.py ckpt=<file>|[<file>,...] | method=bicubic|identity|gdp task=<task> [scale=<s>]; data=<preset>|[...]"""

from diffir.runs.cli import evaluate

if __name__ == "__main__":
    evaluate()
