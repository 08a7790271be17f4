"""User representations for conditioning: histories of item indices -> vectors."""

from genrec.users.encoders import (
    CausalLMUserEncoder,
    MeanItemEncoder,
    SASRecUserEncoder,
    UserEncoder,
    title_prompt,
)

__all__ = ["UserEncoder", "MeanItemEncoder", "SASRecUserEncoder", "CausalLMUserEncoder", "title_prompt"]
