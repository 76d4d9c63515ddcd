"""MLflow tracking: where runs live (``store``), how a training run is grouped and tagged (``runs``,
``lineage``), what is logged while training (``training``) and after evaluation (``results``).

Every entry point connects first (``store.connect``): an unreachable tracking server or database is a
``TrackingError`` naming the URI before any work starts.
"""
