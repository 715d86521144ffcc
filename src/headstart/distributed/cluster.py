"""Connecting to Ray: an existing cluster by address, or a local one that listens on loopback only.

Pitfalls met here and handled:
- a local cluster binds its servers to the node's address, which Ray takes from the network
  interface; `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes that 127.0.0.1, so nothing listens beyond
  this machine unless the user runs `ray start` themselves and passes `--ray-address`;
- a stale `/tmp/ray/ray_current_cluster` (left by a cluster that died) makes `address="auto"` try a
  dead cluster: a local start passes `address="local"`, which never reads it;
- embedding actors that take every CPU starve the tasks reading and decoding files and the job
  stalls without an error: the local cluster gets one CPU more than the actors claim, a remote one
  is checked for the same headroom, and `no_progress_timeout` fails a job that stops moving.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import HeadstartError
from ..options import RayOptions

INSTALL_HINT = "install the Ray extra: pip install 'headstart[ray]'"


def require_ray() -> None:
    """A one-line error unless Ray Data and pyarrow are installed."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise HeadstartError(f"--engine ray needs Ray Data and pyarrow: {INSTALL_HINT}")


@contextmanager
def ray_cluster(options: RayOptions) -> Iterator[None]:
    """Ray connected for the block: to `options.address`, or to a local cluster started (on
    loopback) and stopped here. A Ray already initialised by the caller is used as it is."""
    require_ray()
    import ray

    if ray.is_initialized():
        _check_headroom(ray, options)
        yield
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # node address 127.0.0.1 (see above)
    common = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if options.address:
            ray.init(address=options.address, **common)
        else:
            ray.init(
                address="local",
                num_cpus=options.workers * options.cpus_per_worker + options.reserved_cpus,
                **common,
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = options.address or "a local cluster"
        raise HeadstartError(f"Ray: can't connect to {where} ({' '.join(str(e).split())[:200]})") from None
    try:
        _check_headroom(ray, options)
        yield
    finally:
        ray.shutdown()


def _check_headroom(ray, options: RayOptions) -> None:
    cpus = ray.cluster_resources().get("CPU", 0)
    claimed = options.workers * options.cpus_per_worker
    if cpus < claimed + options.reserved_cpus:
        raise HeadstartError(
            f"Ray: the cluster has {cpus:g} CPUs; {options.workers} workers × {options.cpus_per_worker} CPU "
            f"plus {options.reserved_cpus} for reading files need {claimed + options.reserved_cpus} "
            "(actors holding every CPU would starve the readers and stall); use fewer --workers"
        )
