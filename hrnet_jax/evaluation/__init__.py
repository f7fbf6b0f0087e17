"""Evaluation: the loop over a padded evaluation loader, test protocols, outputs.

`evaluator.evaluate(model, variables, loader, config=..., mesh=...)` feeds every
process's batches to the evaluator of the config's task (`hrnet_jax.tasks`), counts
examples exactly once over every device and host, and returns the task's metrics.
`inference` holds the official segmentation test protocol (whole image, sliding
windows, multi-scale and flip); `metrics` the exact on-device counting (confusion
matrix, top-k) reduced over devices and hosts; `outputs` what an evaluation leaves on
disk (results json, IoU table and bar chart, pictures, submission PNGs).

    from hrnet_jax.evaluation import evaluator
    results = evaluator.evaluate(model, variables, loader, config=config, mesh=mesh)

Submodules are imported on first use (they import JAX).
"""
