"""Evaluation of referring segmentation: box source -> top box per frame -> segmentor -> J, F, box IoU.

Evaluation shards (frames with ground-truth masks, optionally their embedding shards) are scored by
``scoring.evaluate_shards``, independent of Ray, a group of shards that holds whole videos at a time
(``scoring.whole_video_groups``: a video longer than the shard window is split over consecutive samples, which
``plan_shards`` may cut between two shards). It yields one *partial* row per (sample, expression); the driver
merges them into one row per expression with ``aggregate.merge_partials`` and summarises with
``aggregate.summarize``; ``mlflow_logging`` names and logs the summary in MLflow.

Box sources (``box_sources``):
- ``oracle``: the ground-truth box of each frame (the paper's "GT box + SAM" upper bound); no box where the
  object is absent, which gives an empty mask;
- ``model``: the top-confidence box of the trained proposal generator, online over the whole video (the state
  runs from one sample to the next: the boxes inference gives, ``groprompt.models.prompts``).

Protocols, each number by the benchmark's own:
- every benchmark, per expression (``J``, ``F``, ``JF``, ``box_iou``): J and F as DAVIS computes them over the
  expression's annotated frames (void pixels, ``groprompt.mask_io.VOID_ID``, ignored; a frame where the object is
  absent has an empty ground truth), with the same object id (identity matching); means over expressions. Box IoU
  over the frames where the object is present.
- A2D-Sentences / JHMDB-Sentences (``n_samples``, ``P@K``, ``overall_iou``, ``mean_iou``; MTTR / ReferFormer):
  every annotated (frame, instance, sentence) where the instance is present is one sample
  (``groprompt.evaluation.metrics.iou_summary``).
- Ref-DAVIS17 (``davis_unsupervised``; ReferFormer): per annotator, the masks of all of a video's expressions merged
  into one palette PNG per frame, scored by davis2017-evaluation's unsupervised task; each annotator and their
  mean (``ref_davis``).
- Ref-YouTube-VOS: the official server; the submission zip must hold every frame of every expression of the
  split's meta (``submission``, ``groprompt.mask_io.write_submission_zip``).
- MeViS (``mevis``; henghuiding/MeViS ``tools/eval_mevis.py``): every expression's PNGs of every frame, against the
  union of its objects' masks, J and F averaged over all the video's frames, then over expressions; on "valid" the
  server, from a zip of ``<video>/<exp_id>/<frame>.png`` (``submission.submission_layout``). An expression about
  several objects is one target (``groprompt.data.records.Video.groups``): in the per-expression rows above its
  ground truth is the union of its objects' masks too.
"""
