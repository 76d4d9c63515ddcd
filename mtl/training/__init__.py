"""Training: contiguous-tensor data (``data``), the loop (``trainer``), and reusable utilities.

Utilities meant for other trainers too (e.g. MetaHeac's meta-trainer): ``device`` (device and
precision), ``distributed`` (torchrun process group), ``seeding`` (seeds, RNG state capture/restore),
``checkpoint`` (atomic save, ``weights_only`` load), ``guards`` (NaN/inf loss check), ``optim``
(sparse/dense optimiser split). ``workflow`` trains/evaluates one model into its model directory, whose
layout ``artifacts`` documents.

MetaHeac (look-alike campaigns): ``campaigns`` (splits grouped by campaign, compact embedding tables),
``meta`` (meta-training), ``plain`` (its baseline without meta-learning), ``adaptation`` (per-campaign
fine-tuning, sequential and vmapped), ``metaheac_workflow`` (train/evaluate into the model directory).
"""
