"""mtl_model: the Prefect-free library behind the pipeline (data, model, training, evaluation, embedding).

Nothing is imported here, so `import mtl_model.config` stays cheap and no work happens at import time.
"""
