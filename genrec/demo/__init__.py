"""The built-in end-to-end demo on the synthetic catalog: no download, a few minutes on 2 CPU cores."""

from genrec.demo.run import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
