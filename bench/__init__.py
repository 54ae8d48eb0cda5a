"""deadrelu's benchmark suite: plain inference vs ``deadrelu.scan`` side by side.

Run ``python -m bench`` (``--quick`` for a one-minute run); see bench/README.md.
"""
