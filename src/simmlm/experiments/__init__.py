"""What the commands run on top of the engine: :mod:`~simmlm.experiments.benchmark` (methods x seeds ->
``summary.json``), :mod:`~simmlm.experiments.comparisons` (every method against simmlm, with intervals),
:mod:`~simmlm.experiments.robustness` (the robustness suite; its config and plan in
:mod:`~simmlm.experiments.suite`), :mod:`~simmlm.experiments.reproducibility`
(provenance, ``simmlm compare``) and :mod:`~simmlm.experiments.costs` (``simmlm costs``). Importing this package
imports none of them."""
