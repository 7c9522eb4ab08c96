"""Helpers of the tools: launching and errors (``launch``), ``--cfg-options`` parsing,
resume choice, batch-size scaling and short runs."""
