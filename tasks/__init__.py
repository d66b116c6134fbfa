"""Prefect tasks: thin wrappers adding caching, retries, logging and artifacts around `mtl_model.steps`."""
