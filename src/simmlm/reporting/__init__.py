"""Results as people read them: :mod:`~simmlm.reporting.format` (the one home of number formatting),
:mod:`~simmlm.reporting.report` (``report.html`` and its figures, rules in :mod:`~simmlm.reporting.report_figures`),
:mod:`~simmlm.reporting.robustness_report` (``robustness.md`` and its figures) and
:mod:`~simmlm.reporting.segmentation_figures`. Importing this package imports none of them."""
