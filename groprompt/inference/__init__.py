"""Referring segmentation of whole videos, streamed frame by frame (the library behind ``pipelines/infer.py``).

One video with all its referring queries at once: frames are decoded as a stream (PyAV for MP4 and other
containers, Pillow for frame folders), encoded by the frozen SAM a few at a time, passed through the proposal
generator online (the batch is the video's queries, the state carries frame t to t + 1), and each query's
top-confidence box becomes a mask with the chosen segmentor. Nothing holds more than ``encode_batch`` frames,
so memory does not grow with the length of the video.

Outputs of one video, under an output folder::

    masks/<video>.parquet                 one row per (query, frame): box xyxy px, score, COCO RLE mask
    png/<video>/<exp_id>/<frame>.png      optional DAVIS palette PNGs (id 1 on the object)
    overlays/<video>/<exp_id>.gif|.mp4    optional overlay video of the mask and box

The parquet file is written to a temporary name and renamed last, so its presence means the video is done;
its schema metadata holds a fingerprint of the queries, the model and the output options, and a re-run skips
a video whose parquet file reads back with the same fingerprint.

Modules (import from them; this package imports nothing):

    sources      input videos: discovery and streamed decoding
    queries      the queries file, grouping per video, the errors table
    predictor    the models a worker holds (frozen encoders, trained weights, segmentor)
    online       the proposal generator run online over frames (shared with evaluation)
    overlays     overlay videos encoded in background threads
    video        predicting one video and writing its outputs
"""
