# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The one error type of the app: a problem with what the user entered, shown in the page as it is."""

from __future__ import annotations


__all__ = ["AppInputError"]


class AppInputError(ValueError):
    """Bad input (an empty script, a prompt over the tokenizer's limit, a folder that is not a pipeline, a size the
    model cannot take, ...). Its message is written for the person using the page and shown there verbatim."""
