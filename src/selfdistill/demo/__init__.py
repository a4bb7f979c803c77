"""The embedded default: `selfdistill demo` (see pipeline.py)."""

from selfdistill.demo.pipeline import DemoSettings, run_demo

__all__ = ["DemoSettings", "run_demo"]
