"""The README's main job. Until training lands: the model summary of every task's paper configuration."""

from __future__ import annotations

from .summary import main as summary


def main() -> None:
    for task in ("sr", "deblur", "inpainting"):
        summary([f"task={task}", "stage=2", "model=paper"])
        print()


if __name__ == "__main__":
    main()
