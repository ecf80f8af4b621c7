"""Dataset-scale explanations and faithfulness: one batch job, locally or on a Ray cluster.

* :mod:`.config`: :class:`BatchConfig` (the job) and :func:`config_hash`;
* :mod:`.sources`: the items of a folder or bundled set, in a fixed order;
* :mod:`.worker`: :class:`BatchWorker`, which explains, scores and writes a batch of items
  (the same class in-process and as a Ray actor);
* :mod:`.local`: :func:`run_local`, the default backend (and :func:`prepare`, shared);
* :mod:`.results`: :func:`finalise` (the tables from the items) and :class:`ResultsFolder`;
* :mod:`.presets`: the pixel-flipping experiment and the localisation table as batch jobs.

``lrp_engine.batch.ray_backend`` (``--ray``) is imported only when asked for: Ray is an
optional extra, never imported by the engine core or the app.
"""

from .config import BatchConfig, ConfigError, config_hash, method_keys, metric_names
from .local import Interrupted, RunReport, prepare, run_local
from .results import ResultsError, ResultsFolder, finalise
from .worker import BatchError, BatchWorker

__all__ = ["BatchConfig", "BatchError", "BatchWorker", "ConfigError", "Interrupted",
           "ResultsError", "ResultsFolder", "RunReport", "config_hash", "finalise",
           "method_keys", "metric_names", "prepare", "run_local"]
