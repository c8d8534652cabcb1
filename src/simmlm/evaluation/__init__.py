"""Evaluation, plain PyTorch (no Lightning, no run folders): :mod:`~simmlm.evaluation.inferers` (a model under
modality subsets, whole datasets or by sliding window), :mod:`~simmlm.evaluation.evaluate` (the per-subset reports)
and :mod:`~simmlm.evaluation.predict` (one sample given as files: what ``simmlm predict`` computes once a run's
task has read them). Importing this package imports none of them."""
