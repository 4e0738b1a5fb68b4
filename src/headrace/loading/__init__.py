"""Loading code: importing ``module:attribute`` by name, and checking, before a run
starts, that the optional parts it needs are installed."""
