"""Running a durable run on a Ray cluster: shards, leases, workers and the driver.

``hr.Ray`` is the backend a user names; :mod:`.plan` splits a run into shards, each
a durable run of its own; :mod:`.worker` runs shards in Ray actors and
:mod:`.driver` hands them out and joins the result.
"""

from .backend import Ray

__all__ = ["Ray"]
