"""pmupart.sweep: many runs of one scenario over axes of its keys, on Dask.

A sweep file (``docs/sweep.md``) names a base scenario and axes (scenario keys, addressed as
``pmupart run --set`` addresses them, each with a list, a range or a random sample of
values), how they combine (grid, zipped, constraints), and the metrics to take from each
run's report.  From Python::

    from pmupart.sweep import load_sweep, execute, write_parquet
    sw = load_sweep("examples/sweeps/fleet-reservation.toml")
    rows = execute(sw, workers=2)          # a LocalCluster of 2 processes; 0 = in-process
    write_parquet(rows, sw, "fleet.parquet")

``pmupart sweep`` and ``pmupart sweep report`` are the command line.
"""

from pmupart.sweep.executor import Checkpoint, SweepRunError, execute
from pmupart.sweep.results import read_results, write_csv, write_parquet
from pmupart.sweep.runner import Job, run_point
from pmupart.sweep.spec import Axis, Metric, Point, Sweep, SweepError, load_sweep, load_sweep_text

__all__ = [
    "Axis", "Checkpoint", "Job", "Metric", "Point", "Sweep", "SweepError", "SweepRunError",
    "execute", "load_sweep", "load_sweep_text", "read_results", "run_point", "write_csv",
    "write_parquet",
]
