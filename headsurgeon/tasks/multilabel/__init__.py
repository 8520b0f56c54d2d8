"""Multi-label text classification (``problem_type: multi_label_classification``): the data
(:mod:`.data`), the task (:mod:`.task`), its gate (:mod:`.gate`) and the new labels' thresholds
(:mod:`.thresholds`)."""
