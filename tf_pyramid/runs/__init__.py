"""The run directory: what training, evaluation and export share about `--model_dir`.

`checkpoints` restores the newest checkpoint that loads and keeps damaged ones; `files` writes
results atomically and reports damaged ones; `lock` keeps a second training out of a run
directory; `run_config` compares a resumed run's settings with the saved ones and keeps their
history. Nothing here imports `tf_pyramid.training` or `tf_pyramid.serving`.
"""
