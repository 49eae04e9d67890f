"""The restoration tasks and their facts, in one place: the network a task trains, the channels that network
takes, and whether it changes the image size. Code asks here instead of comparing task names.

    >>> from diffir.tasks import task_facts
    >>> facts = task_facts("realsr"), task_facts("inpainting"), task_facts("deblur")
    >>> facts[0].network, facts[1].input_channels, facts[2].output_scale(4)
    ('sr', 4, 1)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One restoration task (``task=`` of train.py / eval.py / infer.py)."""

    name: str
    network: str  # the architecture its checkpoints hold: realsr trains the SR network (eval/infer task=sr)
    input_channels: int  # of the LQ the network takes: inpainting's is the masked RGB and the mask (1 = hole)
    resizes: bool  # the output is ``scale`` times the input (SR); the other tasks keep the size

    def output_scale(self, scale: int) -> int:
        """The output/input size ratio of this task's network for the config's ``scale``."""
        return int(scale) if self.resizes else 1


TASKS = {
    t.name: t
    for t in (
        Task("sr", network="sr", input_channels=3, resizes=True),
        Task("realsr", network="sr", input_channels=3, resizes=True),
        Task("deblur", network="deblur", input_channels=3, resizes=False),
        Task("inpainting", network="inpainting", input_channels=4, resizes=False),
    )
}


def task_facts(name: str) -> Task:
    """The facts of task ``name``; a ``ValueError`` naming the tasks for an unknown one."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
