"""genrec: generative recommendation built on LLMs.

Data flows one way: ``data -> embed -> sid -> prompts -> model/train -> decoding -> eval``,
with ``diffusion`` beside them. Import submodules directly (``from genrec.data import ...``);
this top-level module stays light so that ``import genrec`` never pulls torch.
"""

__version__ = "0.1.0"
