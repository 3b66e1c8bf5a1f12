"""Evaluation of referring segmentation: box source -> top box per frame -> segmentor -> J, F, box IoU.

One evaluation shard (frames with ground-truth masks, optionally its embedding shard) is scored by
``scoring.evaluate_shard``, independent of Ray. It yields one *partial* row per (sample, expression): sums over
the sample's annotated frames. A video longer than the shard window is split over samples (even shards), so the
driver merges partials into one row per expression with ``aggregate.merge_partials`` and summarises with
``aggregate.summarize``; ``tracking`` names and logs the summary in MLflow.

Box sources (``box_sources``):
- ``oracle``: the ground-truth box of each frame (the paper's "GT box + SAM" upper bound); no box where the
  object is absent, which gives an empty mask;
- ``model``: the top-confidence box of the trained proposal generator, online over the sample's frames.

Per expression (over its annotated frames; a frame where the object is absent has an empty ground truth):
J, F and J&F as DAVIS computes them (void pixels, ``groprompt.outputs.VOID_ID``, ignored), box IoU over the
frames where the object is present, and the summed mask intersection and union (A2D/JHMDB-Sentences' P@K,
overall and mean IoU).
"""
