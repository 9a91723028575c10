"""Cost model and benchmarks of the long-video pipeline (issue 7).

- `cost_model`: analytic FLOPs, K/V bytes and roofline lower bounds of a Wan2.1 transformer with the cross-clip
  KV cache, from shapes only (no torch); `python -m diffusers_longvid.benchmarks.cost_model --markdown` prints the
  tables of `docs/performance.md`.

The real-size GPU timing script is `benchmarks/gpu_wan13b.py` at the repository root (self-contained, not part of
the installed package).
"""
