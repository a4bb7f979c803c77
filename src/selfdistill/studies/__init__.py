"""Paper experiments as runnable grids: `selfdistill study NAME [key=value ...]`.

A study is a list of cells (a training recipe + overrides, or an offline SFT job), each evaluated
on the study's eval sets next to the base model, with one combined report. See docs/studies.md.
"""

from .catalog import STUDIES
from .grid import Cell, Study, StudyError, resolve_settings, select_cells
from .runner import run_study

__all__ = ["STUDIES", "Cell", "Study", "StudyError", "resolve_settings", "select_cells", "run_study"]
