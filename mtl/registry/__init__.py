"""The model registry: one registered model per dataset and model (``<dataset>-<model>``), versions
created from training runs, aliases instead of stages.

* ``gate``: the promotion decision -- floors, no regression against the champion, sanity;
* ``register``: a run becomes a version (alias ``challenger``); ``champion`` moves only on a pass;
* ``manage``: list, show, manual promotion and rollback (reasons recorded as version tags);
* ``rescore``: scores a registered model on new test data through its served (pyfunc) form.
"""
