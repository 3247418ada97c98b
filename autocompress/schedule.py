"""The finalize phase's schedule: the long distillation fine-tune the best candidates get after the search.

One pydantic model, ``FinalizeSpec``, read from a space file's ``finalize:`` section (our
supernet spaces and a user model's ``--space`` file alike); every key has a default, so a space
without the section finalizes with the defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FinalizeSpec(BaseModel):
    """How the chosen candidates (and the teacher) are trained after the search."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    top: int = Field(3, ge=0, description="candidates finalized after a search (--finalize K overrides; 0: off)")
    epochs: int = Field(2, ge=1, description="epochs over the train split")
    lr: float = Field(0.02, gt=0, description="peak SGD learning rate")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="learning rate over all the steps")
    batch_size: int = Field(128, ge=1)
    weight_decay: float = Field(4e-5, ge=0)
    kd_alpha: float = Field(0.9, ge=0, le=1, description="distillation weight (teacher: the largest network)")
    kd_temperature: float = Field(4.0, gt=0)

    def describe(self, teacher: str = "the largest network") -> str:
        """One line: what the model card and report say about the schedule (``teacher``: what the
        distillation learns from; a bring-your-own-model run's is the user's original model)."""
        return (f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}, {self.schedule} LR from {self.lr:g}, "
                f"batch {self.batch_size}, KD alpha {self.kd_alpha:g} T {self.kd_temperature:g} "
                f"from {teacher}")  # fmt: skip
