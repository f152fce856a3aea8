"""The launchers by name: ``local`` (:mod:`ablations.launch.local`) keeps worker processes
busy on this machine; ``ray`` (:mod:`ablations.launch.ray_cluster`, imported only when
chosen) runs each job as a Ray task on a cluster.

:data:`LAUNCHERS` maps a name to a planner: called before any MLflow run is created, it
checks that the launcher can work (raising :class:`LauncherError`, one line for the user)
and returns a :class:`LaunchPlan`: how to lay runs out, and the launch function itself.
"""

from __future__ import annotations

from collections.abc import Callable

from ablations.launch.jobs import LauncherError, LaunchPlan, Resources
from ablations.launch.local import plan_local


def plan_ray(resources: Resources) -> LaunchPlan:
    """Ray tasks on ``$RAY_ADDRESS``'s cluster, else on a Ray started here for this run."""
    if resources.runs_per_gpu is not None:
        raise LauncherError(
            "RUNS_PER_GPU is for the local launcher; with Ray, a fraction GPUS_PER_RUN=1/k "
            "puts k runs on each GPU"
        )
    try:
        from ablations.launch import ray_cluster
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] == "ray":
            raise LauncherError(
                "--launcher ray needs Ray: pip install '.[ray]' (or make install)"
            ) from None
        raise
    return ray_cluster.plan(resources)


LAUNCHERS: dict[str, Callable[[Resources], LaunchPlan]] = {"local": plan_local, "ray": plan_ray}
