"""LayerForge's Python API: create or load a study, run it, read its results as pandas DataFrames, export,
re-rank, transfer.

    import layerforge as lf

    study = lf.create_study("configs/quickstart.yaml", name="mine", storage="sqlite:///runs/mine.db")  # or a dict
    study.run(evaluations=20)      # or minutes=...; blocks; Ctrl-C stops it cleanly, run() again continues
    study.results()                # one row per candidate: formula, status, stage, reason, val_* objectives, ...
    study.best(k=3)                # or study.pareto()
    study.export("exported/", top=3)
    study.rerank(top=3, seeds=3)   # test-split results, mean and std over seeds
    study.transfer(top=3, seeds=3) # the same on networks of other families, against the best baseline
    lf.load_study("mi", storage="sqlite:///runs/mine.db")   # by name or unique prefix
    lf.list_studies(storage="sqlite:///runs/mine.db")

The `layerforge` command is a thin layer over these calls. Errors a user can fix are ConfigError (a bad config or
argument), StoreError (a missing or ambiguous study, an unreachable store) and its StudyBusyError (another driver
runs the study).
"""

from layerforge.study import Study, create_study, list_studies, load_study
from search.config import ConfigError, StudyConfig
from search.lease import StudyBusyError
from search.store import StoreError

__all__ = [
    "ConfigError",
    "StoreError",
    "Study",
    "StudyBusyError",
    "StudyConfig",
    "create_study",
    "list_studies",
    "load_study",
]
